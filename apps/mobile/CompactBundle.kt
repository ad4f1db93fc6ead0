// CompactBundle.kt - load a compact ONNX export bundle on Android with ONNX Runtime Mobile.
// NOT BUILT OR TESTED in this repository: a starting point; see README.md.
//
// Gradle: implementation("com.microsoft.onnxruntime:onnxruntime-android:<version>")
// Make the bundle with `compact export onnx MODEL -o bundle` and copy the folder into the app's files (or assets,
// then read the files as bytes). ORT Mobile runs the .onnx files as they are; for the smallest binary build a
// custom ORT with the operators the graphs use (the manifest lists the opset).

package compact.bundle

import ai.onnxruntime.OnnxTensor
import ai.onnxruntime.OrtEnvironment
import ai.onnxruntime.OrtSession
import org.json.JSONObject
import java.io.File
import java.nio.FloatBuffer
import java.nio.LongBuffer

class CompactBundle(folder: File) : AutoCloseable {
    val manifest = JSONObject(File(folder, "manifest.json").readText())
    private val env = OrtEnvironment.getEnvironment()
    private val sessions: Map<String, OrtSession>
    private val pre = manifest.getJSONObject("preprocess")
    private val tok = manifest.optJSONObject("tokenizer") ?: error("the bundle has no tokenizer")
    private val contextLength = tok.getInt("context_length")

    init {
        require(manifest.getString("target") == "onnx") { "${folder} is not an ONNX bundle" }
        val files = manifest.getJSONArray("files")
        sessions = (0 until files.length()).map { files.getJSONObject(it) }
            .filter { it.getString("path").endsWith(".onnx") && !it.optBoolean("optimized") }
            .associate { it.getString("tower") to env.createSession(File(folder, it.getString("path")).path, options()) }
        require("image" in sessions && "text" in sessions) { "${folder} needs an image and a text graph" }
    }

    /** Worker threads sleep between calls: an app runs the image and text sessions back to back, and a pool left
     *  spinning by one steals the cores the other needs (compact_bundle.py does the same; see the README). */
    private fun options() = OrtSession.SessionOptions().apply {
        addConfigEntry("session.intra_op.allow_spinning", "0")
    }

    /** Ids with BOS/EOS, truncated like compact does (the last id stays EOS). */
    fun encode(text: String): LongArray {
        val ids = when (tok.getString("type")) {
            "bytes" -> longArrayOf(1) + text.toByteArray(Charsets.UTF_8).map { (it.toInt() and 0xff) + 3L } + 2L
            // "hf": tokenizer.json. Port apps/browser/tokenizer.js (BPE plus the normalizers and pre-tokenizers
            // compact's bundles use, dependency-free) and check its ids against compact_tokenizer.py.
            else -> error("tokenizer type ${tok.getString("type")}: port apps/browser/tokenizer.js first")
        }
        return if (ids.size > contextLength) ids.copyOf(contextLength - 1) + ids.last() else ids
    }

    /** Text embeddings (rows L2-normalised when manifest "normalized" is true). */
    fun embedTexts(texts: List<String>): Array<FloatArray> {
        val rows = texts.map(::encode)
        val width = if (tok.optString("pad_to") == "max_length") contextLength else rows.maxOf { it.size }
        val pad = tok.optLong("pad_id", 0)
        val ids = LongArray(rows.size * width) { pad }
        val mask = LongArray(rows.size * width)
        rows.forEachIndexed { r, row -> row.forEachIndexed { i, id -> ids[r * width + i] = id; mask[r * width + i] = 1 } }
        val shape = longArrayOf(rows.size.toLong(), width.toLong())
        OnnxTensor.createTensor(env, LongBuffer.wrap(ids), shape).use { idsT ->
            OnnxTensor.createTensor(env, LongBuffer.wrap(mask), shape).use { maskT ->
                sessions.getValue("text").run(mapOf("input_ids" to idsT, "attention_mask" to maskT)).use { out ->
                    @Suppress("UNCHECKED_CAST")
                    return out[0].value as Array<FloatArray>
                }
            }
        }
    }

    /** Image embedding from RGB bytes already resized/cropped to image_size^2 (e.g. Bitmap.createScaledBitmap). */
    fun embedImage(rgb: ByteArray): FloatArray {
        val n = pre.getInt("image_size")
        val mean = pre.getJSONArray("mean")
        val std = pre.getJSONArray("std")
        val chw = FloatArray(3 * n * n)
        for (c in 0 until 3) for (i in 0 until n * n) {
            chw[c * n * n + i] = (((rgb[3 * i + c].toInt() and 0xff) / 255f) - mean.getDouble(c).toFloat()) /
                std.getDouble(c).toFloat()
        }
        OnnxTensor.createTensor(env, FloatBuffer.wrap(chw), longArrayOf(1, 3, n.toLong(), n.toLong())).use { px ->
            sessions.getValue("image").run(mapOf("pixel_values" to px)).use { out ->
                @Suppress("UNCHECKED_CAST")
                return (out[0].value as Array<FloatArray>)[0]
            }
        }
    }

    override fun close() = sessions.values.forEach { it.close() }
}
