/// An optional field written as `null` when nil: the API's objects always carry every key (OpenAI's shapes do,
/// and clients test for `null`), where a synthesized `Encodable` leaves nil fields out.
@propertyWrapper
struct EncodedAsNull<Value: Encodable>: Encodable {
    var wrappedValue: Value?

    init(wrappedValue: Value?) { self.wrappedValue = wrappedValue }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.singleValueContainer()
        if let wrappedValue { try c.encode(wrappedValue) } else { try c.encodeNil() }
    }
}

extension EncodedAsNull: Sendable where Value: Sendable {}
