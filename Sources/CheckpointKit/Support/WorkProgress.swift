
/// Where long operations say how far they have got. The library never prints: a program installs
/// an observer (a progress line on a terminal) and the writers, quantizers and model loader report
/// each finished item to it; with no observer a report costs one lock.
public enum WorkProgress {
    /// Receives `(step, done, total, item)`: "quantizing", 12, 210, "model.layers.3.mlp.up_proj.weight".
    public typealias Observer = @Sendable (_ step: String, _ done: Int, _ total: Int, _ item: String) -> Void

    static let observer = LockedValue<Observer?>(nil)

    /// Installs `observer` (nil removes it) for every later report, from any thread.
    public static func observe(_ observer: Observer?) { self.observer.withLock { $0 = observer } }

    /// Tells the observer, if any, that `done` of `total` items of `step` are finished.
    public static func report(_ step: String, done: Int, total: Int, item: String = "") {
        let current = observer.withLock { $0 }
        current?(step, done, total, item)
    }
}
