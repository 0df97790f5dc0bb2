/// Fixed decimals without Foundation's formatters.
public func formatDecimal(_ value: Double, places: Int) -> String {
    guard value.isFinite else { return value.isNaN ? "nan" : (value > 0 ? "inf" : "-inf") }
    var scale = 1.0
    for _ in 0..<places { scale *= 10 }
    let rounded = (abs(value) * scale).rounded()
    let integer = Int(rounded / scale)
    let fraction = Int(rounded - Double(integer) * scale)
    let sign = value < 0 && rounded != 0 ? "-" : ""
    guard places > 0 else { return sign + String(integer) }
    let fractionText = String(fraction)
    return sign + String(integer) + "." + String(repeating: "0", count: places - fractionText.count) + fractionText
}

/// Compact scientific-or-fixed form for statistics columns.
public func formatValue(_ value: Double) -> String {
    guard value.isFinite else { return value.isNaN ? "nan" : (value > 0 ? "inf" : "-inf") }
    let magnitude = abs(value)
    if magnitude != 0 && (magnitude < 1e-3 || magnitude >= 1e5) {
        var exponent = 0
        var mantissa = magnitude
        while mantissa >= 10 { mantissa /= 10; exponent += 1 }
        while mantissa < 1 { mantissa *= 10; exponent -= 1 }
        return (value < 0 ? "-" : "") + formatDecimal(mantissa, places: 3) + "e" + (exponent < 0 ? "-" : "+") + String(abs(exponent))
    }
    return formatDecimal(value, places: 4)
}
