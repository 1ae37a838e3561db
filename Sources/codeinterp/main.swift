import Commands

// `main()` of an AsyncParsableCommand is async only through the protocol; call it through the async entry point.
await CodeInterpEntry.run()
