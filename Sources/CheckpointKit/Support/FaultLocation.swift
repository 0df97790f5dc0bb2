/// Where an error happened, spelled the one way every message spells it: `<file>: tensor '<name>'`.
/// Names come from files, so control characters are escaped: a hostile name cannot break the
/// one-line error or move the terminal's cursor.
public func faultLocation(_ file: String, tensor: String? = nil) -> String {
    let place = escapedName(file)
    guard let tensor else { return place }
    return "\(place): tensor '\(escapedName(tensor))'"
}

/// `name` with control and bidirectional-override characters written as `\u{…}`.
public func escapedName(_ name: String) -> String {
    guard name.unicodeScalars.contains(where: needsEscape) else { return name }
    var out = ""
    for scalar in name.unicodeScalars {
        if needsEscape(scalar) { out += "\\u{" + String(scalar.value, radix: 16) + "}" } else { out.unicodeScalars.append(scalar) }
    }
    return out
}

private func needsEscape(_ scalar: Unicode.Scalar) -> Bool {
    scalar.value < 0x20 || scalar.value == 0x7F || (0x80..<0xA0).contains(scalar.value)
        || (0x202A...0x202E).contains(scalar.value) || (0x2066...0x2069).contains(scalar.value)
}
