@testable import CheckpointKit
import TestSupport
import Testing

@Test("Calibration chunks are spread over the whole text: the first at its start, the last at its end, evenly between, none overlapping")
func calibrationChunksSpreadOverTheText() {
    let text = Array(0..<10_000)
    let sample = CalibrationSampling.spread.tokens(of: text, budget: 2_048, context: 512)
    #expect(sample.count == 2_048)
    let starts = stride(from: 0, to: sample.count, by: 512).map { sample[$0] }
    // Starts at i · (10000 − 512) / 3: 0, 3162, 6325, 9488.
    #expect(starts == [0, 3_162, 6_325, 9_488])
    for (k, start) in starts.enumerated() {
        #expect(Array(sample[(k * 512)..<((k + 1) * 512)]) == Array(start..<(start + 512)), "chunk \(k) is one contiguous run of the text")
    }
    #expect(sample.last == text.last)
}

@Test("A text no longer than the budget, or a budget of one chunk, is taken from its start as before",
      arguments: [(1_000, 2_048), (2_048, 2_048), (5_000, 512), (5_000, 700)])
func calibrationChunksOfAShortText(length: Int, budget: Int) {
    let text = Array(0..<length)
    for sampling in CalibrationSampling.allCases {
        #expect(sampling.tokens(of: text, budget: budget, context: 512) == Array(text.prefix(budget)), "\(sampling)")
    }
}

@Test("Spread chunks never read past the text, whatever the sizes")
func calibrationChunksStayInside() {
    for length in [513, 1_025, 4_097, 65_537] {
        for budget in [1_024, 1_536, 4_096, 16_384] {
            let sample = CalibrationSampling.spread.tokens(of: Array(0..<length), budget: budget, context: 512)
            #expect(sample.allSatisfy { $0 >= 0 && $0 < length })
            #expect(sample.count == (length > budget ? budget / 512 * 512 : min(length, budget)), "\(length) tokens, budget \(budget)")
        }
    }
}

@Test("Sampling from the start takes the text's first tokens, however long the text")
func calibrationFromTheStart() {
    #expect(CalibrationSampling.start.tokens(of: Array(0..<10_000), budget: 2_048, context: 512) == Array(0..<2_048))
}

@Test("GPTQ dampens the NF4/FP4 codebooks by 0.1 of the mean diagonal and integers by GPTQModel's 0.01 unless told, for gptq and awq+gptq alike")
func dampeningDefaultsByScheme() throws {
    var calibration = CalibrationOptions(tokens: [1, 2, 3], context: 3, bos: nil, source: "text")
    let nf4 = FourBitScheme(type: .nf4), fp4 = FourBitScheme(type: .fp4)
    let int4 = IntegerScheme(bits: 4, groupSize: 64, symmetric: true, format: .packQuantized)
    for method in [CalibrationOptions.Method.gptq, .awqGPTQ] {
        calibration.method = method
        #expect(try CalibratedQuantizer.gptqOptions(nf4, calibration: calibration).damp == 0.1)
        #expect(try CalibratedQuantizer.gptqOptions(fp4, calibration: calibration).damp == 0.1)
        #expect(try CalibratedQuantizer.gptqOptions(int4, calibration: calibration).damp == 0.01)
    }
    calibration.damp = 0.02
    #expect(try CalibratedQuantizer.gptqOptions(nf4, calibration: calibration).damp == 0.02)
    #expect(try CalibratedQuantizer.gptqOptions(int4, calibration: calibration).damp == 0.02)
}

@Test("GPTQ over a whole model writes the same bytes on 1, 2 and 3 threads (its matrices run side by side on more): NF4, int4 with refinement, and true-sequential NF4 (groups of one matrix)")
func calibratedQuantizeIsTheSameOnAnyThreadCount() throws {
    let tokens = readBytes(Paths.fixture("eval/eval_tokens_u32le.bin")).withUnsafeBytes { raw in
        (0..<512).map { Int(raw.loadUnaligned(fromByteOffset: 4 * $0, as: UInt32.self)) }
    }
    let input = try Checkpoint(path: Paths.fixture("models/tiny-llama"))
    let scratch = ScratchDirectory()
    let schemes: [(any QuantizationScheme, sequential: Bool)] = [(FourBitScheme(type: .nf4, blockSize: 32), false),
                                                                  (IntegerScheme(bits: 4, groupSize: 32), false),
                                                                  (FourBitScheme(type: .nf4, blockSize: 32), true)]
    for (s, (scheme, sequential)) in schemes.enumerated() {
        var calibration = CalibrationOptions(tokens: tokens, context: 64, bos: nil, source: "eval tokens")
        calibration.actOrder = true
        calibration.trueSequential = sequential
        let files = try [1, 2, 3].map { threads -> [UInt8] in
            let output = scratch.file("s\(s)-t\(threads)")
            _ = try CalibratedQuantizer.quantize(input, to: output, options: QuantizationOptions(scheme: scheme, threads: ThreadBudget(threads)),
                                                 calibration: calibration)
            return readBytes(output + "/model.safetensors")
        }
        #expect(!files[0].isEmpty)
        #expect(files[1] == files[0], "\(scheme), sequential \(sequential): 2 threads")
        #expect(files[2] == files[0], "\(scheme), sequential \(sequential): 3 threads")
    }
}
