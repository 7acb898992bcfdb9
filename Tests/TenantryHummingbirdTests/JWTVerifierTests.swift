import Foundation
import Testing
@testable import TenantryHummingbird

@Suite("HS256 JWT verification")
struct JWTVerifierTests {
    let secret = Array("a-test-secret-of-32-bytes-length".utf8)

    @Test("a signed token verifies; expired, tampered, wrong key, alg none and missing exp are refused")
    func verification() throws {
        let verifier = try JWTVerifier(secret: secret)
        let future = Date().timeIntervalSince1970 + 300
        let token = try JWTVerifier.sign(["shop_id": .integer(7), "exp": .number(future)], secret: secret)
        #expect(try verifier.verify(token)["shop_id"] == .integer(7))

        let expired = try JWTVerifier.sign(["shop_id": .integer(7), "exp": .integer(1_000)], secret: secret)
        #expect(throws: JWTVerifier.Failure.self) { try verifier.verify(expired) }
        let noExpiry = try JWTVerifier.sign(["shop_id": .integer(7)], secret: secret)
        #expect(throws: JWTVerifier.Failure.self) { try verifier.verify(noExpiry) }
        let otherKey = try JWTVerifier.sign(["shop_id": .integer(7), "exp": .number(future)], secret: Array("another-secret".utf8))
        #expect(throws: JWTVerifier.Failure.self) { try verifier.verify(otherKey) }

        // The payload changed to another shop, signature kept.
        let parts = token.split(separator: ".")
        let forged = JWTVerifier.base64URLEncode(Data(#"{"exp":\#(Int(future)),"shop_id":8}"#.utf8))
        #expect(throws: JWTVerifier.Failure.self) { try verifier.verify("\(parts[0]).\(forged).\(parts[2])") }
        // alg none, no signature.
        let none = JWTVerifier.base64URLEncode(Data(#"{"alg":"none"}"#.utf8))
        #expect(throws: JWTVerifier.Failure.self) { try verifier.verify("\(none).\(parts[1]).") }
        #expect(throws: JWTVerifier.Failure.self) { try verifier.verify("not a token") }
    }

    @Test("secrets shorter than 32 bytes are refused")
    func shortSecret() throws {
        #expect(throws: JWTVerifier.Failure.self) { try JWTVerifier(secret: Array("0123456789abcdef0123456789abcde".utf8)) }
        _ = try JWTVerifier(secret: Array("0123456789abcdef0123456789abcdef".utf8))
    }
}
