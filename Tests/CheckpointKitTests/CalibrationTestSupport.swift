import TestSupport
import Testing
@testable import CheckpointKit

/// The tiny Llama quantized twice to int4 (groups of 32, act-order) by GPTQ on 1024 of the
/// evaluation tokens, `configure` setting the first run (false) and the second (true) apart:
/// each output (written in `scratch`) and the notes of its report.
func tinyLlamaCalibratedTwice(_ label: String, in scratch: ScratchDirectory, configure: (inout CalibrationOptions, Bool) -> Void) throws
    -> [(checkpoint: Checkpoint, notes: [String])]
{
    let tokens = readBytes(Paths.fixture("eval/eval_tokens_u32le.bin")).withUnsafeBytes { raw in
        (0..<1024).map { Int(raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)) }
    }
    let input = try Checkpoint(path: Paths.fixture("models/tiny-llama"))
    return try [false, true].map { second in
        var calibration = CalibrationOptions(tokens: tokens, context: 64, bos: nil, source: "eval tokens")
        calibration.actOrder = true
        configure(&calibration, second)
        let output = scratch.file("\(label)-\(second)")
        let report = try CalibratedQuantizer.quantize(input, to: output, options: QuantizationOptions(scheme: IntegerScheme(bits: 4, groupSize: 32)),
                                                      calibration: calibration)
        return (try Checkpoint(path: output), report.notes)
    }
}

/// Expects the first layer's q, k and v packed alike in both checkpoints (their inputs are the
/// token embeddings either way) and its o packed differently.
func expectFirstLayerQKVAlikeAndODifferent(_ first: Checkpoint, _ second: Checkpoint) throws {
    func packed(_ checkpoint: Checkpoint, _ name: String) throws -> [UInt8] {
        try #require(checkpoint.view(named: name + ".weight_packed")).byteArray
    }
    for name in ["q_proj", "k_proj", "v_proj"].map({ "model.layers.0.self_attn." + $0 }) {
        #expect(try packed(first, name) == packed(second, name), "\(name)")
    }
    #expect(try packed(first, "model.layers.0.self_attn.o_proj") != packed(second, "model.layers.0.self_attn.o_proj"))
}
