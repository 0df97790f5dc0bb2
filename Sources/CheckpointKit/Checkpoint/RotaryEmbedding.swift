#if canImport(Glibc)
import Glibc
#endif

/// Rotary position embedding as transformers computes it (`modeling_rope_utils.py`): the inverse
/// frequencies of a `rope_type`, the attention factor that scales cos and sin, and how many
/// dimensions of each head rotate (`partial_rotary_factor`).
public struct RotaryEmbedding: Sendable, Equatable {
    /// A `rope_type` and its parameters.
    public enum Scaling: Sendable, Equatable {
        /// `default`: θ^(−2i/d).
        case none
        /// `linear`: positions divided by `factor`.
        case linear(factor: Double)
        /// `dynamic` (NTK): the base grows once a forward is longer than `originalContext`.
        case dynamic(factor: Double, originalContext: Int)
        /// `yarn`: interpolation blended with extrapolation over a ramp of dimensions.
        case yarn(factor: Double, originalContext: Int, betaFast: Double, betaSlow: Double, attentionFactor: Double, truncate: Bool)
        /// `llama3`: low frequencies divided by `factor`, high kept, a smooth ramp between.
        case llama3(factor: Double, lowFrequencyFactor: Double, highFrequencyFactor: Double, originalContext: Int)
        /// `longrope` (Phi-3's `su`): per-dimension factors, long ones once a forward exceeds `originalContext`.
        case longrope(short: [Double], long: [Double], originalContext: Int, attentionFactor: Double)
    }

    /// The base θ (`rope_theta`).
    public var theta: Double
    /// Dimensions of each head that rotate (head_dim × `partial_rotary_factor`), even.
    public var rotaryDimensions: Int
    /// The `rope_type` and its parameters.
    public var scaling: Scaling

    /// Float32 inverse frequencies for a forward of `length` tokens, and the factor cos and sin are multiplied by.
    public func inverseFrequencies(length: Int) -> (frequencies: [Float], attentionFactor: Float) {
        let d = rotaryDimensions
        // transformers: base ** (arange(0, d, 2).float() / d), in float32.
        func plain(_ base: Double) -> [Float] {
            (0..<(d / 2)).map { i in Float(pow(base, Double(Float(2 * i) / Float(d)))) }
        }
        switch scaling {
        case .none:
            return (plain(theta).map { 1 / $0 }, 1)
        case .linear(let factor):
            return (plain(theta).map { 1 / $0 / Float(factor) }, 1)
        case let .dynamic(factor, original):
            let seen = Double(max(length, original))
            let base = theta * pow(factor * seen / Double(original) - (factor - 1), Double(d) / Double(d - 2))
            return (plain(base).map { 1 / $0 }, 1)
        case let .yarn(factor, original, betaFast, betaSlow, attentionFactor, truncate):
            let powers = plain(theta)
            func correctionDimension(_ rotations: Double) -> Double {
                Double(d) * log(Double(original) / (rotations * 2 * Double.pi)) / (2 * log(theta))
            }
            var low = correctionDimension(betaFast), high = correctionDimension(betaSlow)
            if truncate { low = low.rounded(.down); high = high.rounded(.up) }
            low = max(low, 0)
            high = min(high, Double(d - 1))
            if low == high { high += 0.001 }
            let frequencies = (0..<(d / 2)).map { i -> Float in
                let ramp = min(max((Float(i) - Float(low)) / (Float(high) - Float(low)), 0), 1)
                let extrapolationWeight = 1 - ramp
                let extrapolated = 1 / powers[i], interpolated = 1 / (Float(factor) * powers[i])
                return interpolated * (1 - extrapolationWeight) + extrapolated * extrapolationWeight
            }
            return (frequencies, Float(attentionFactor))
        case let .llama3(factor, lowFactor, highFactor, original):
            let f = Float(factor), lo = Float(lowFactor), hi = Float(highFactor), old = Float(original)
            let lowWavelength = old / lo, highWavelength = old / hi
            let frequencies = plain(theta).map { power -> Float in
                let inverse = 1 / power
                let wavelength = 2 * Float.pi / inverse
                if wavelength < highWavelength { return inverse }
                if wavelength > lowWavelength { return inverse / f }
                let smooth = (old / wavelength - lo) / (hi - lo)
                return (1 - smooth) * inverse / f + smooth * inverse
            }
            return (frequencies, 1)
        case let .longrope(short, long, original, attentionFactor):
            let factors = length > original ? long : short
            let exponents = (0..<(d / 2)).map { Float(2 * $0) / Float(d) }
            let frequencies = (0..<(d / 2)).map { i in 1 / (Float(factors[i]) * Float(pow(theta, Double(exponents[i])))) }
            return (frequencies, Float(attentionFactor))
        }
    }

    /// cos/sin tables [positions, rotaryDimensions/2] for a forward of `positions` tokens: angle
    /// p·inv_freq in float32, cos and sin times the attention factor.
    public func tables(positions: Int) -> (cos: [Float], sin: [Float]) {
        let (frequencies, factor) = inverseFrequencies(length: positions)
        let half = rotaryDimensions / 2
        var c = [Float](repeating: 0, count: positions * half), s = c
        for p in 0..<positions {
            for i in 0..<half {
                let angle = Float(p) * frequencies[i]
                c[p * half + i] = Float(Glibc.cos(Double(angle))) * factor
                s[p * half + i] = Float(Glibc.sin(Double(angle))) * factor
            }
        }
        return (c, s)
    }

    /// Reads `rope_parameters` (transformers 5) or `rope_scaling` + `rope_theta` (older files):
    /// `parameters` is the dictionary, `top` the whole config (some keys live at its top level).
    /// An unknown `rope_type` throws, naming it.
    static func parse(_ parameters: JSONValue?, top: JSONValue, theta defaultTheta: Double, headDim: Int, partialFactor: Double,
                      maxPositions: Int, file: String) throws -> RotaryEmbedding {
        func bad(_ key: String, _ reason: String) -> ModelError { .badConfig(file: file, key: key, reason: reason) }
        let p = parameters ?? .null
        let theta = p["rope_theta"]?.doubleValue ?? defaultTheta
        guard theta > 1, theta.isFinite else { throw bad("rope_theta", "\(theta) is out of range (expected a base above 1)") }
        var rotary = Int(Double(headDim) * partialFactor)
        rotary -= rotary % 2
        guard rotary >= 2 else { throw bad("partial_rotary_factor", "\(partialFactor) leaves no dimensions to rotate") }
        let type = p["rope_type"]?.stringValue ?? p["type"]?.stringValue ?? "default"
        func number(_ key: String, default value: Double? = nil) throws -> Double {
            if let v = p[key]?.doubleValue, v.isFinite { return v }
            if let value { return value }
            throw bad("rope_parameters.\(key)", "missing (expected a number for rope_type \(type))")
        }
        func factor() throws -> Double {
            let f = try number("factor")
            guard f >= 1, f <= 1_048_576 else { throw bad("rope_parameters.factor", "\(f) is out of range (expected 1 or more)") }
            return f
        }
        func original(_ fallback: Int?, topFirst: Bool = false) throws -> Int {
            let inside = p["original_max_position_embeddings"]?.intValue, outside = top["original_max_position_embeddings"]?.intValue
            let v = (topFirst ? outside ?? inside : inside ?? outside) ?? fallback
            guard let v, v > 0, v <= 1 << 30 else {
                throw bad("rope_parameters.original_max_position_embeddings", "missing or out of range (expected a positive context length)")
            }
            return v
        }
        let scaling: Scaling
        switch type {
        case "default":
            scaling = .none
        case "linear":
            scaling = .linear(factor: try factor())
        case "dynamic":
            // transformers grows the base once a forward is longer than max_position_embeddings (not the original context).
            scaling = .dynamic(factor: try factor(), originalContext: maxPositions)
        case "yarn":
            let old = try original(maxPositions)
            let f = p["factor"]?.doubleValue == nil ? Double(maxPositions) / Double(old) : try factor()
            func mscale(_ scale: Double, _ m: Double) -> Double { scale <= 1 ? 1 : 0.1 * m * log(scale) + 1 }
            var attention = p["attention_factor"]?.doubleValue
            if attention == nil, let m = p["mscale"]?.doubleValue, let all = p["mscale_all_dim"]?.doubleValue, m != 0, all != 0 {
                attention = mscale(f, m) / mscale(f, all)
            }
            // transformers reads them with `or`: 0 also means the default.
            let betaFast = p["beta_fast"]?.doubleValue.flatMap { $0 == 0 ? nil : $0 } ?? 32
            let betaSlow = p["beta_slow"]?.doubleValue.flatMap { $0 == 0 ? nil : $0 } ?? 1
            scaling = .yarn(factor: f, originalContext: old, betaFast: betaFast, betaSlow: betaSlow,
                            attentionFactor: attention ?? mscale(f, 1), truncate: p["truncate"]?.boolValue ?? true)
        case "llama3":
            let low = try number("low_freq_factor"), high = try number("high_freq_factor")
            guard high != low else { throw bad("rope_parameters.high_freq_factor", "equals low_freq_factor (expected them to differ)") }
            scaling = .llama3(factor: try factor(), lowFrequencyFactor: low, highFrequencyFactor: high, originalContext: try original(maxPositions))
        case "longrope", "su":
            func factors(_ key: String) throws -> [Double] {
                guard let list = p[key]?.arrayValue?.compactMap(\.doubleValue), list.count == rotary / 2, list.allSatisfy({ $0 > 0 && $0.isFinite })
                else { throw bad("rope_parameters.\(key)", "expected \(rotary / 2) positive numbers (one per rotated dimension pair)") }
                return list
            }
            // Phi-3's top-level original_max_position_embeddings overrides the one inside the rope parameters.
            let old = try original(top["original_max_position_embeddings"]?.intValue ?? maxPositions, topFirst: true)
            let f = p["factor"]?.doubleValue ?? Double(maxPositions) / Double(old)
            let attention = p["attention_factor"]?.doubleValue ?? (f <= 1 ? 1 : (1 + log(f) / log(Double(old))).squareRoot())
            scaling = .longrope(short: try factors("short_factor"), long: try factors("long_factor"), originalContext: old, attentionFactor: attention)
        default:
            throw bad("rope_parameters.rope_type", "\(type) is not supported (expected default, linear, dynamic, yarn, llama3 or longrope)")
        }
        return RotaryEmbedding(theta: theta, rotaryDimensions: rotary, scaling: scaling)
    }
}
