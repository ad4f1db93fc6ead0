// CompactBundle.swift - load a compact Core ML export bundle (manifest, tokenizer, .mlpackage towers) on iOS/macOS.
// NOT BUILT OR TESTED in this repository: a starting point; see README.md.
//
// Make the bundle with `compact export coreml MODEL -o Bundle` and add the folder to the app as a folder reference.

import CoreML
import Foundation

struct Manifest: Decodable {
    struct Input: Decodable { let name: String; let dtype: String; let shape: [ShapeDim] }
    struct FileEntry: Decodable { let path: String; let tower: String; let inputs: [Input] }
    struct Preprocess: Decodable {
        let image_size: Int; let resize_mode: String; let interpolation: String; let mean: [Float]; let std: [Float]
    }
    struct Tokenizer: Decodable {
        let type: String; let context_length: Int; let pad_to: String
        let bos_id: Int?; let eos_id: Int?; let pad_id: Int?; let file: String?
    }
    let target: String
    let embed_dim: Int
    let normalized: Bool
    let preprocess: Preprocess
    let tokenizer: Tokenizer?
    let files: [FileEntry]
}

/// A shape entry is a number or an axis name ("batch", "seq").
enum ShapeDim: Decodable {
    case fixed(Int), named(String)
    init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if let n = try? c.decode(Int.self) { self = .fixed(n) } else { self = .named(try c.decode(String.self)) }
    }
}

enum BundleError: Error { case notCoreML(String), missingTower(String), unsupportedTokenizer(String) }

final class CompactBundle {
    let manifest: Manifest
    let image: MLModel
    let text: MLModel
    let tokenize: (String) -> [Int32]   // ids with BOS/EOS, not padded

    init(folder: URL, computeUnits: MLComputeUnits = .all) throws {
        let data = try Data(contentsOf: folder.appendingPathComponent("manifest.json"))
        manifest = try JSONDecoder().decode(Manifest.self, from: data)
        guard manifest.target == "coreml" else { throw BundleError.notCoreML(manifest.target) }
        let config = MLModelConfiguration()
        config.computeUnits = computeUnits
        func load(_ tower: String) throws -> MLModel {
            guard let entry = manifest.files.first(where: { $0.tower == tower }) else { throw BundleError.missingTower(tower) }
            let compiled = try MLModel.compileModel(at: folder.appendingPathComponent(entry.path))  // cache this in real apps
            return try MLModel(contentsOf: compiled, configuration: config)
        }
        image = try load("image")
        text = try load("text")
        guard let tok = manifest.tokenizer else { throw BundleError.unsupportedTokenizer("none") }
        switch tok.type {
        case "bytes":  // UTF-8 bytes + 3, BOS 1, EOS 2 (PAD 0)
            tokenize = { s in [1] + s.utf8.map { Int32($0) + 3 } + [2] }
        default:
            // "hf": tokenizer.json. Port apps/browser/tokenizer.js (BPE + the normalizers/pre-tokenizers compact's
            // bundles use, no dependencies), or use swift-transformers' Tokenizers with add_special_tokens off and
            // BOS/EOS added as here. Whichever: compare its ids with compact_tokenizer.py on your languages first.
            throw BundleError.unsupportedTokenizer(tok.type)
        }
    }

    /// Text embeddings, one text at a time, padded to the graph's fixed length (Core ML "fixed" shapes).
    func embed(text s: String) throws -> [Float] {
        let tok = manifest.tokenizer!
        var ids = tokenize(s)
        if ids.count > tok.context_length { ids = Array(ids.prefix(tok.context_length - 1)) + [ids.last!] }
        let length = tok.context_length  // the exported fixed length; read it from the model description if enumerated
        let inputIds = try MLMultiArray(shape: [1, NSNumber(value: length)], dataType: .int32)
        let mask = try MLMultiArray(shape: [1, NSNumber(value: length)], dataType: .int32)
        for i in 0..<length {
            inputIds[i] = NSNumber(value: i < ids.count ? ids[i] : Int32(tok.pad_id ?? 0))
            mask[i] = NSNumber(value: i < ids.count ? 1 : 0)
        }
        let out = try text.prediction(from: MLDictionaryFeatureProvider(dictionary: [
            "input_ids": MLFeatureValue(multiArray: inputIds), "attention_mask": MLFeatureValue(multiArray: mask)]))
        return Self.floats(out)
    }

    /// Image embedding from RGB bytes already resized/cropped to image_size x image_size (row-major, 3 bytes/pixel).
    func embed(rgb: [UInt8]) throws -> [Float] {
        let p = manifest.preprocess, n = p.image_size
        let pixels = try MLMultiArray(shape: [1, 3, NSNumber(value: n), NSNumber(value: n)], dataType: .float32)
        for c in 0..<3 { for i in 0..<(n * n) {
            pixels[c * n * n + i] = NSNumber(value: (Float(rgb[3 * i + c]) / 255 - p.mean[c]) / p.std[c])
        } }
        let out = try image.prediction(from: MLDictionaryFeatureProvider(dictionary: [
            "pixel_values": MLFeatureValue(multiArray: pixels)]))
        return Self.floats(out)
    }

    private static func floats(_ out: MLFeatureProvider) -> [Float] {
        let name = out.featureNames.first!
        let array = out.featureValue(for: name)!.multiArrayValue!
        return (0..<array.count).map { array[$0].floatValue }  // L2-normalised when manifest.normalized
    }
}
