import Dispatch

/// A store's database connection and the serial queue that alone uses it: blocking database
/// calls run there, in order, never on Swift's cooperative pool.
final class StoreQueue<Resource: Sendable>: Sendable {
    private let queue: DispatchQueue
    private let resource: Resource

    init(label: String, _ resource: Resource) {
        queue = DispatchQueue(label: label)
        self.resource = resource
    }

    func run<T: Sendable>(_ body: @escaping @Sendable (Resource) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try body(self.resource) }) }
        }
    }
}
