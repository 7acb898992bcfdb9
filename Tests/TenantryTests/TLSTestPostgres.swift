import EmbeddedPostgres
import Foundation
import TenantryCore
import TenantryTestSupport

/// One small PostgreSQL with TLS on, for the COPY TO session's TLS tests (the shared test server
/// keeps TLS off: other suites check how `sslmode=require` fails there). Started on first use; its
/// certificate, for `localhost` and 127.0.0.1, is made at start with the openssl CLI and signed by
/// a test CA; a second CA signed nothing (for verification failures). Everything lives in the
/// server's temporary directory, removed when the test process exits.
enum TLSTestPostgres {
    /// The running server and its certificate authorities.
    struct Server: Sendable {
        /// The server.
        let server: EmbeddedPostgres
        /// The PEM file of the CA that signed the server's certificate.
        let authority: String
        /// The PEM file of a CA that did not.
        let otherAuthority: String

        /// The superuser URL of `database` with `sslmode` `tls`, to `host` (127.0.0.1 or localhost),
        /// trusting `rootCertificate` (an `sslrootcert`).
        func url(
            database: String = "postgres", tls: PostgresURL.TLSMode, host: String = "127.0.0.1", rootCertificate: String? = nil
        ) throws -> PostgresURL {
            var url = try PostgresURL(server.url(database: database))
            url.tls = tls
            url.host = host
            url.rootCertificate = rootCertificate
            return url
        }
    }

    private static let box = Box()

    /// The server, started on first use.
    static func server() async throws -> Server { try await box.get() }

    private actor Box {
        private var task: Task<Server, any Error>?

        func get() async throws -> Server {
            if let task { return try await task.value }
            let task = Task { try await TLSTestPostgres.start() }
            self.task = task
            return try await task.value
        }
    }

    private static func start() async throws -> Server {
        var configuration = EmbeddedPostgres.Configuration.temporary(settings: ["max_connections": "30", "shared_buffers": "16MB"])
        let directory = "\(configuration.directory)/tls"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try await makeCertificates(in: directory, serverUser: geteuid() == 0 ? configuration.osUserWhenRoot : nil)
        configuration.settings["ssl"] = "on"
        configuration.settings["ssl_cert_file"] = "\(directory)/server.crt"
        configuration.settings["ssl_key_file"] = "\(directory)/server.key"
        let server = EmbeddedPostgres(configuration: configuration, logger: TestPostgres.logger)
        try await server.start()
        return Server(server: server, authority: "\(directory)/ca.crt", otherAuthority: "\(directory)/other-ca.crt")
    }

    /// Two CAs and a server certificate signed by the first (P-256 keys: fast). The server's key
    /// is mode 0600 and owned by the OS user the server runs as, which PostgreSQL requires.
    private static func makeCertificates(in directory: String, serverUser: String?) async throws {
        try """
            [req]
            distinguished_name = dn
            prompt = no
            x509_extensions = ca
            [dn]
            CN = Tenantry test CA
            [ca]
            basicConstraints = critical, CA:TRUE
            keyUsage = critical, keyCertSign, cRLSign
            subjectKeyIdentifier = hash
            """.write(toFile: "\(directory)/ca.cnf", atomically: true, encoding: .utf8)
        try """
            basicConstraints = CA:FALSE
            keyUsage = critical, digitalSignature, keyEncipherment
            extendedKeyUsage = serverAuth
            subjectAltName = DNS:localhost, IP:127.0.0.1
            """.write(toFile: "\(directory)/server.ext", atomically: true, encoding: .utf8)
        let key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
        let steps: [[String]] = [
            ["req", "-x509", "-new"] + key + ["-keyout", "ca.key", "-out", "ca.crt", "-days", "3", "-config", "ca.cnf"],
            ["req", "-x509", "-new"] + key + ["-keyout", "other-ca.key", "-out", "other-ca.crt", "-days", "3", "-config", "ca.cnf"],
            ["req", "-new"] + key + ["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost"],
            ["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-out", "server.crt",
             "-days", "3", "-extfile", "server.ext"],
        ]
        let openssl = ProcessRunner.which("openssl") ?? "/usr/bin/openssl"
        for arguments in steps {
            let output = try await ProcessRunner().run(openssl, arguments, currentDirectory: directory)
            guard output.succeeded else {
                throw TenantryError(code: .configuration, message: "openssl \(arguments.prefix(2).joined(separator: " ")) failed: \(output.text)")
            }
        }
        let keyFile = "\(directory)/server.key"
        chmod(keyFile, 0o600)
        if let serverUser, let account = getpwnam(serverUser), chown(keyFile, account.pointee.pw_uid, account.pointee.pw_gid) != 0 {
            throw TenantryError(code: .configuration, message: "could not chown \(keyFile) to \(serverUser)")
        }
    }
}
