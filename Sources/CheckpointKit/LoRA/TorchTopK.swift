/// Which k elements `torch.topk(x, k, largest=True)` picks on the CPU when magnitudes tie.
///
/// torch (aten `topk_impl_loop`) pairs each value with its index and runs the C++ standard
/// library over them with `a.value > b.value`: `std::partial_sort` when k·64 ≤ n, else
/// `std::nth_element`. Which of several equal values land in the first k is then decided by
/// libstdc++'s algorithms (introselect with a median-of-three pivot, insertion sort below four
/// elements, heap select when the depth runs out). PEFT's magnitude pruning keeps exactly those,
/// so ckpt replays the same steps to keep the same elements; ties are common in adapters whose
/// values come from a coarse initialisation.
enum TorchTopK {
    typealias Element = (value: Float, index: Int)

    /// The indices of the k elements torch keeps, in no particular order.
    static func largest(_ values: [Float], k: Int) -> [Int] {
        precondition(k > 0 && k <= values.count)
        var queue: [Element] = values.enumerated().map { ($0.element, $0.offset) }
        queue.withUnsafeMutableBufferPointer { q in
            if k * 64 <= q.count {
                heapSelect(q, first: 0, middle: k, last: q.count)
            } else {
                nthElement(q, nth: k - 1)
            }
        }
        return queue[..<k].map(\.index)
    }

    /// torch's comparator: larger first.
    @inline(__always) static func before(_ a: Element, _ b: Element) -> Bool { a.value > b.value }

    /// `std::nth_element` (libstdc++ `__introselect`).
    static func nthElement(_ q: UnsafeMutableBufferPointer<Element>, nth: Int) {
        var first = 0, last = q.count
        var depth = 2 * (Int.bitWidth - 1 - last.leadingZeroBitCount)
        while last - first > 3 {
            if depth == 0 {
                heapSelect(q, first: first, middle: nth + 1, last: last)
                q.swapAt(first, nth)
                return
            }
            depth -= 1
            let cut = partitionAroundPivot(q, first: first, last: last)
            if cut <= nth { first = cut } else { last = cut }
        }
        insertionSort(q, first: first, last: last)
    }

    /// `__unguarded_partition_pivot`: the median of (first+1, mid, last−1) moved to `first`, then partitioned around it.
    static func partitionAroundPivot(_ q: UnsafeMutableBufferPointer<Element>, first: Int, last: Int) -> Int {
        let mid = first + (last - first) / 2
        let a = first + 1, b = mid, c = last - 1
        if before(q[a], q[b]) {
            if before(q[b], q[c]) { q.swapAt(first, b) } else if before(q[a], q[c]) { q.swapAt(first, c) } else { q.swapAt(first, a) }
        } else if before(q[a], q[c]) {
            q.swapAt(first, a)
        } else if before(q[b], q[c]) {
            q.swapAt(first, c)
        } else {
            q.swapAt(first, b)
        }
        var low = first + 1, high = last
        let pivot = first
        while true {
            while before(q[low], q[pivot]) { low += 1 }
            high -= 1
            while before(q[pivot], q[high]) { high -= 1 }
            if !(low < high) { return low }
            q.swapAt(low, high)
            low += 1
        }
    }

    /// `__insertion_sort` on [first, last).
    static func insertionSort(_ q: UnsafeMutableBufferPointer<Element>, first: Int, last: Int) {
        guard first != last else { return }
        var i = first + 1
        while i < last {
            let value = q[i]
            if before(value, q[first]) {
                var j = i
                while j > first { q[j] = q[j - 1]; j -= 1 }
                q[first] = value
            } else {
                var hole = i, next = i - 1
                while before(value, q[next]) { q[hole] = q[next]; hole = next; next -= 1 }
                q[hole] = value
            }
            i += 1
        }
    }

    /// `__heap_select`: a heap of [first, middle) keeps the k elements, each later one that goes before its top replacing it.
    static func heapSelect(_ q: UnsafeMutableBufferPointer<Element>, first: Int, middle: Int, last: Int) {
        let length = middle - first
        if length >= 2 {
            var parent = (length - 2) / 2
            while true {
                adjustHeap(q, first: first, hole: parent, length: length, value: q[first + parent])
                if parent == 0 { break }
                parent -= 1
            }
        }
        var i = middle
        while i < last {
            if before(q[i], q[first]) {
                // __pop_heap(first, middle, i)
                let value = q[i]
                q[i] = q[first]
                adjustHeap(q, first: first, hole: 0, length: length, value: value)
            }
            i += 1
        }
    }

    /// `__adjust_heap` then `__push_heap`, offsets relative to `first`.
    static func adjustHeap(_ q: UnsafeMutableBufferPointer<Element>, first: Int, hole start: Int, length: Int, value: Element) {
        let top = start
        var hole = start, child = start
        while child < (length - 1) / 2 {
            child = 2 * (child + 1)
            if before(q[first + child], q[first + child - 1]) { child -= 1 }
            q[first + hole] = q[first + child]
            hole = child
        }
        if length & 1 == 0 && child == (length - 2) / 2 {
            child = 2 * (child + 1)
            q[first + hole] = q[first + child - 1]
            hole = child - 1
        }
        var parent = (hole - 1) / 2
        while hole > top && before(q[first + parent], value) {
            q[first + hole] = q[first + parent]
            hole = parent
            parent = (hole - 1) / 2
        }
        q[first + hole] = value
    }
}
