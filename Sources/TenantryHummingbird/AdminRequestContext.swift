import Hummingbird
import Logging

/// The request context of the admin API: who is calling (set by ``BearerTokenMiddleware``) and
/// the request body limit.
public struct AdminRequestContext: RequestContext, ActorRequestContext {
    /// The largest request body accepted: 64 KiB (the admin API's bodies are a few fields).
    public static let bodyLimit = 64 * 1024

    /// Hummingbird's per-request storage.
    public var coreContext: CoreRequestContextStorage
    /// `api:<token fingerprint>` once authenticated.
    public var actor: String?

    /// A context for one request.
    public init(source: Source) {
        self.coreContext = .init(source: source)
    }

    /// Bodies larger than ``bodyLimit`` are refused with 413 when decoded.
    public var maxUploadSize: Int { Self.bodyLimit }
}

/// A request context that records the authenticated caller, for the audit log.
public protocol ActorRequestContext: RequestContext {
    /// The audit actor of the caller (never the credential itself), once authenticated.
    var actor: String? { get set }
}
