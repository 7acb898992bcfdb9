import Foundation
import Hummingbird
import Logging
import ServiceLifecycle
import Tenantry

/// `tenantry serve`: the admin API as a Hummingbird application, with its job runner and (when
/// given) the relay as services of the same ServiceGroup, so they start and stop together.
public enum AdminService {
    /// The application serving `api` (and `console` at `/console`) on `host:port`; `services`
    /// (e.g. the ``Relay``, a ``TenantRouter``) run alongside the job runner.
    public static func makeApplication(
        api: AdminAPI, console: Console? = nil, host: String = "127.0.0.1", port: Int = 8080, services: [any Service] = [],
        logger: Logger
    ) -> some ApplicationProtocol {
        Application(
            router: api.makeRouter(console: console),
            configuration: .init(address: .hostname(host, port: port), serverName: "tenantry"),
            services: [api.jobs] + services,
            logger: logger)
    }
}
