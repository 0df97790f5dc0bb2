/// The one bound every shape read from a file must meet before ckpt computes with it: the product
/// of its non-zero dimensions is at most 2⁴⁸. A non-empty tensor meets it whenever its bytes exist
/// (no file is 256 TB); an empty one cannot smuggle a 2⁶⁴−1 dimension past the byte-count check
/// and trap later in a product of two dimensions.
public enum ShapeLimits {
    /// Largest product of a shape's non-zero dimensions.
    public static let maximumElements: UInt64 = 1 << 48

    /// Whether `dimensions` meet the bound (every partial product then fits in Int without overflow).
    public static func isAcceptable<S: Sequence>(_ dimensions: S) -> Bool where S.Element: BinaryInteger {
        var product: UInt64 = 1
        for d in dimensions {
            guard d >= 0, let value = UInt64(exactly: d) else { return false }
            if value == 0 { continue }
            let (next, overflow) = product.multipliedReportingOverflow(by: value)
            guard !overflow, next <= maximumElements else { return false }
            product = next
        }
        return true
    }
}
