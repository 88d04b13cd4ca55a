// Proves the project's SHA-256 is FIPS 180-4 SHA-256: it reproduces the NIST example vectors
// ("abc", the empty string, the 448-bit and 896-bit messages, one million "a"), every padding
// boundary (lengths 0–199, pinned as a hash of their digests computed by an independent
// implementation), and feeding a message in odd chunk sizes gives the one-shot digest.
import OnceLedgerFormat
import Testing

@Suite struct SHA256Tests {
    static let vectors: [(message: String, digest: String)] = [
        ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
        ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
        ("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"),
        ("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"),
    ]

    @Test(arguments: 0..<4)
    func nistExampleVector(index: Int) {
        let (message, digest) = SHA256Tests.vectors[index]
        #expect(Hex.string(SHA256.hash(Array(message.utf8))) == digest, "message of \(message.utf8.count) bytes")
        var hasher = SHA256()
        hasher.update(message)
        #expect(Hex.string(hasher.finalize()) == digest, "String update")
    }

    @Test func messageSizesAreTheNISTOnes() {
        #expect(SHA256Tests.vectors[2].message.utf8.count * 8 == 448)
        #expect(SHA256Tests.vectors[3].message.utf8.count * 8 == 896)
    }

    @Test func oneMillionA() {
        let expected = "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        let message = [UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)
        #expect(Hex.string(SHA256.hash(message)) == expected)
        // The same million bytes fed 1000 at a time (the NIST "long message" shape).
        var hasher = SHA256()
        let chunk = [UInt8](repeating: UInt8(ascii: "a"), count: 1000)
        for _ in 0..<1000 { hasher.update(chunk) }
        #expect(Hex.string(hasher.finalize()) == expected)
    }

    /// Lengths 0..<200 cross every padding case (55/56/63/64/119/120 bytes …). The pinned
    /// value is SHA-256 of the concatenated digests, computed with Python's hashlib.
    @Test func everyPaddingBoundary() {
        var digests: [UInt8] = []
        for length in 0..<200 {
            let message = (0..<length).map { UInt8(($0 * 7 + 3) % 256) }
            digests += SHA256.hash(message)
        }
        #expect(Hex.string(SHA256.hash(digests)) == "615d67a99b8c846e1f0582dfe127019e93c33a66e89ced6a4f81f932c82ece87")
    }

    @Test(arguments: [1, 2, 3, 7, 13, 55, 56, 63, 64, 65, 127, 129, 1000])
    func incrementalUpdateInOddChunksEqualsOneShot(chunkSize: Int) {
        let message = (0..<2_345).map { UInt8(($0 * 31 + 17) % 251) }
        let oneShot = SHA256.hash(message)
        var hasher = SHA256()
        var index = 0
        var step = 0
        while index < message.count {
            // Alternate the given size with an odd one so chunk edges fall everywhere.
            let size = step % 2 == 0 ? chunkSize : (chunkSize * 3 + 1) % 67 + 1
            let end = min(message.count, index + size)
            hasher.update(message[index..<end])
            index = end
            step += 1
        }
        #expect(hasher.finalize() == oneShot)
        // Empty updates change nothing.
        var withEmpty = SHA256()
        withEmpty.update([UInt8]())
        withEmpty.update(message)
        withEmpty.update([UInt8]())
        #expect(withEmpty.finalize() == oneShot)
    }

    @Test func digestIs32Bytes() {
        #expect(SHA256.hash([UInt8]()).count == 32)
        #expect(SHA256.hash([UInt8](repeating: 1, count: 1000)).count == 32)
    }
}
