import ArgumentParser
import CheckpointKit

/// The calibration options of ckpt-quantize (GPTQ/AWQ) and ckpt-merge-lora (re-quantizing a GPTQ/AWQ base).
public struct CalibrationTextOptions: ParsableArguments {
    /// `--calibration-text FILE`: the text whose activations weigh each weight's error.
    @Option(help: "GPTQ/AWQ: the text whose activations weigh each weight's error (read as bytes, tokenized by the model's tokenizer).")
    public var calibrationText: String?

    /// `--calibration-tokens N`: tokens of it to use.
    @Option(help: "GPTQ/AWQ: calibration tokens to use from the text (whole chunks of --ctx).")
    public var calibrationTokens: Int = 16384

    /// `--calibration-sampling spread|start`: which of the text's tokens are used.
    @Option(help: "GPTQ/AWQ: which tokens of the text calibrate: spread (chunks evenly spaced from its start to its end) or start (its first tokens, as ckpt did before). Default: spread, which lowered SmolLM2-135M's int4 GPTQ perplexity increase by 3 points.")
    public var calibrationSampling: CalibrationSampling = .spread

    /// `--ctx N`: tokens per calibration chunk.
    @Option(help: "GPTQ/AWQ: tokens per calibration chunk.")
    public var ctx: Int = 512

    /// Whether the counts are usable (checked by each program's `validate`).
    public var countsArePositive: Bool { calibrationTokens > 0 && ctx > 1 }

    /// The defaults: no text, 16384 tokens in chunks of 512, spread over the text.
    public init() {}
}

/// `--calibration-sampling` takes the sampling's name; a wrong one is a usage error listing both.
extension CalibrationSampling: ExpressibleByArgument {}
