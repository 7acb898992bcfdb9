import Foundation
import Testing
@testable import TenantryCore

@Suite("Keyring")
struct KeyringTests {
    let keyA = EncryptionKey.generate()
    let keyB = EncryptionKey.generate()

    @Test("round trip, format v1:<key-id>:<base64>, fresh nonce each time")
    func roundTrip() throws {
        let keyring = Keyring(current: keyA)
        let sealed = try keyring.seal("s3cret-pässword", tenant: "42", field: "password")
        let parts = sealed.split(separator: ":")
        #expect(parts.count == 3 && parts[0] == "v1" && String(parts[1]) == keyA.id)
        #expect(Data(base64Encoded: String(parts[2])) != nil)
        #expect(!sealed.contains("s3cret"))
        #expect(try keyring.open(sealed, tenant: "42", field: "password") == "s3cret-pässword")
        #expect(try keyring.seal("x", tenant: "42", field: "password") != keyring.seal("x", tenant: "42", field: "password"))
    }

    @Test("wrong key: unknownKey, naming key ids only")
    func wrongKey() throws {
        let sealed = try Keyring(current: keyA).seal("hunter2", tenant: "1", field: "password")
        let error = #expect(throws: TenantryError.self) { try Keyring(current: keyB).open(sealed, tenant: "1", field: "password") }
        #expect(error?.code == .unknownKey)
        #expect(error?.message.contains(keyA.id) == true)
        #expect(error?.message.contains("hunter2") == false)
        #expect(error?.message.contains(keyA.hex) == false)
    }

    @Test("tampered ciphertext: tamperedCiphertext, for a flip anywhere")
    func tampered() throws {
        let keyring = Keyring(current: keyA)
        let sealed = try keyring.seal("hunter2", tenant: "1", field: "password")
        let parts = sealed.split(separator: ":").map(String.init)
        var bytes = [UInt8](Data(base64Encoded: parts[2])!)
        for position in [0, 12, 14, bytes.count / 2, bytes.count - 1] {
            var copy = bytes
            copy[position] ^= 0x01
            let forged = "v1:\(parts[1]):\(Data(copy).base64EncodedString())"
            let error = #expect(throws: TenantryError.self) { try keyring.open(forged, tenant: "1", field: "password") }
            #expect(error?.code == .tamperedCiphertext, "flip at \(position)")
            #expect(error?.message.contains("hunter2") == false)
        }
        bytes.removeLast(3)
        let truncated = "v1:\(parts[1]):\(Data(bytes).base64EncodedString())"
        #expect(throws: TenantryError.self) { try keyring.open(truncated, tenant: "1", field: "password") }
    }

    @Test("ciphertext of tenant A opened as tenant B (or another field): wrongCiphertextContext")
    func movedCiphertext() throws {
        let keyring = Keyring(current: keyA)
        let sealed = try keyring.seal("hunter2", tenant: "7", field: "password")
        let error = #expect(throws: TenantryError.self) { try keyring.open(sealed, tenant: "8", field: "password") }
        #expect(error?.code == .wrongCiphertextContext)
        #expect(error?.message.contains("tenant 7") == true)
        #expect(error?.message.contains("hunter2") == false)
        let field = #expect(throws: TenantryError.self) { try keyring.open(sealed, tenant: "7", field: "connection_string") }
        #expect(field?.code == .wrongCiphertextContext)
    }

    @Test("malformed values are refused with their own code")
    func malformed() {
        let keyring = Keyring(current: keyA)
        for value in ["", "plaintext", "v2:abcdabcd:AAAA", "v1:abc:AAAA", "v1:\(keyA.id):not base64!", "v1:\(keyA.id):AAAA"] {
            let error = #expect(throws: TenantryError.self) { try keyring.open(value, tenant: "1", field: "password") }
            #expect(error?.code == .malformedCiphertext, "\(value)")
        }
    }

    @Test("rotation: previous keys open, reseal moves to the current key, then the old key can go")
    func rotation() throws {
        let old = Keyring(current: keyA)
        let sealed = try old.seal("hunter2", tenant: "3", field: "password")
        let rotating = Keyring(current: keyB, previous: [keyA])
        #expect(try rotating.open(sealed, tenant: "3", field: "password") == "hunter2")
        let resealed = try #require(try rotating.reseal(sealed, tenant: "3", field: "password"))
        #expect(Keyring.keyID(of: resealed) == keyB.id)
        #expect(try rotating.reseal(resealed, tenant: "3", field: "password") == nil)
        #expect(try Keyring(current: keyB).open(resealed, tenant: "3", field: "password") == "hunter2")
        #expect(throws: TenantryError.self) { try Keyring(current: keyB).open(sealed, tenant: "3", field: "password") }
    }

    @Test("key ids are stable and differ per key; hex round-trips")
    func keyIDs() throws {
        #expect(try EncryptionKey(hex: keyA.hex).id == keyA.id)
        #expect(keyA.id != keyB.id)
        #expect(keyA.id.count == 8)
    }
}
