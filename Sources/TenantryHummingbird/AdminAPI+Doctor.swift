import Foundation
import Hummingbird
import Tenantry
import TenantryCore

extension AdminAPI {
    /// `GET /api/superadmin/doctor[?sample=N]`: the setup checks of `tenantry doctor`
    /// (``Operations/doctor(sample:environment:)``) as one ``DoctorReport``. 200 whatever the
    /// checks found (`failed` counts the failures); `sample` (0-10000, default 20; 0: all) bounds
    /// the tenants connected to and routed. No detail holds a secret.
    func addDoctorRoute<Context: ActorRequestContext>(to routes: some RouterMethods<Context>) {
        routes.get("doctor") { request, context in
            var sample = 20
            if let text = request.uri.queryParameters.get("sample") {
                guard let value = Int(text), (0...10_000).contains(value) else {
                    throw AdminError(.badRequest, code: "invalid_argument", "sample must be an integer from 0 to 10000")
                }
                sample = value
            }
            let operations = try await operations(for: context)
            return try Self.json(await operations.doctor(sample: sample))
        }
    }
}
