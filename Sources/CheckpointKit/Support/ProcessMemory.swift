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

    /// Every thread allocates from one arena. With freed blocks kept in the process, each worker's
    /// own arena (glibc's default) keeps the largest set that worker ever freed: calibrated
    /// quantization, whose workers run GPTQ on two matrices side by side, peaked at 540 MiB on
    /// SmolLM2-135M that way and at 485 MiB with one arena, in the same time. For a program's
    /// start, before its workers first allocate (a thread keeps the arena it began with).
    public static func shareOneArena() {
        _ = ckpt_share_one_arena()
    }

    /// Returns the heap's free memory to the kernel: after a phase whose buffers the next phase
    /// does not reuse (the backward pass before calibration), which would otherwise stay in the
    /// process's peak on top of what follows.
    public static func releaseFreeMemory() {
        _ = ckpt_release_free_memory()
    }
}
