int ci_placeholder(void) { return 0; }
