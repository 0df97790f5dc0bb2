import CSystem

/// The process's allocator policy, set by a program before its work starts.
public enum ProcessMemory {
    /// Large blocks come from the heap and stay in the process once freed, so a program that
    /// allocates the same large buffers again and again (evaluation: scratch and logits per
    /// chunk) reuses them instead of mapping fresh pages, faulting and zeroing them each time.
    /// Peak memory stays that of the largest set of buffers alive at once.
    public static func reuseLargeAllocations() {
        _ = ckpt_reuse_large_allocations()
    }
}
