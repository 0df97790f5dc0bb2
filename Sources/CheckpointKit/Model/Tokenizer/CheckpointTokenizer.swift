extension Tokenizer {
    /// The tokenizer of a checkpoint: its synthesized tokenizer.json (a GGUF's vocabulary), else
    /// the folder's tokenizer.json with its tokenizer_config.json.
    public convenience init(checkpoint: Checkpoint) throws {
        if let (json, config, file) = try checkpoint.tokenizerDocuments() {
            try self.init(json: json, file: file, config: config)
        } else {
            try self.init(path: FileSystem.join(checkpoint.directory ?? ".", "tokenizer.json"))
        }
    }
}
