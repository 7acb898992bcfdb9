/// Runs `work` for each of `elements`, at most `concurrency` at a time, starting them in order.
/// `finished` is called in completion order with the element's index, its result and how many
/// are done; when it throws, the rest is cancelled and the error thrown.
public func forEachConcurrently<Element: Sendable, Value: Sendable>(
    _ elements: [Element], concurrency: Int,
    _ work: @escaping @Sendable (Element) async throws -> Value,
    finished: (Int, Result<Value, any Error>, Int) throws -> Void
) async throws {
    guard !elements.isEmpty else { return }
    try await withThrowingTaskGroup(of: (Int, Result<Value, any Error>).self) { group in
        var next = 0
        func add() {
            let index = next
            next += 1
            group.addTask {
                do { return (index, .success(try await work(elements[index]))) } catch { return (index, .failure(error)) }
            }
        }
        for _ in 0..<min(max(1, concurrency), elements.count) { add() }
        var done = 0
        while let (index, result) = try await group.next() {
            done += 1
            try finished(index, result, done)
            if next < elements.count { add() }
        }
    }
}

/// The results of `work` for each of `elements`, in their order, at most `concurrency` running at
/// a time; the first failure is thrown and the rest cancelled.
public func concurrentMap<Element: Sendable, Value: Sendable>(
    _ elements: [Element], concurrency: Int, _ work: @escaping @Sendable (Element) async throws -> Value
) async throws -> [Value] {
    var results = [Value?](repeating: nil, count: elements.count)
    try await forEachConcurrently(elements, concurrency: concurrency, work) { index, result, _ in
        results[index] = try result.get()
    }
    return results.compactMap { $0 }
}
