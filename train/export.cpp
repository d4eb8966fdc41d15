#include "lowbit/train/export.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "lowbit/engine/text.h"
#include "lowbit/io/compressed_tensors.h"
#include "lowbit/io/file_io.h"
#include "lowbit/io/gguf.h"
#include "lowbit/io/hf_model.h"
#include "lowbit/nn/lora.h"

namespace lowbit::train {

namespace fs = std::filesystem;

ExportFormat parse_export_format(const std::string& name) {
  if (name == "hf") return ExportFormat::hf;
  if (name == "compressed-tensors") return ExportFormat::compressed_tensors;
  if (name == "gguf") return ExportFormat::gguf;
  LOWBIT_FAIL("export format '", name, "' is not one of hf, compressed-tensors, gguf (did you mean '",
              closest_match(name, {"hf", "compressed-tensors", "gguf"}), "'?)");
}

namespace {

// What a quantized model was trained for: preset, description and the weight / input specs.
nlohmann::json quant_record(const QuantSetup& q) {
  nlohmann::json r = {{"preset", q.preset->name}, {"description", q.description},
                      {"weight", nlohmann::json::parse(quant::to_json(q.preset->weight))}};
  if (q.preset->input) r["input"] = nlohmann::json::parse(quant::to_json(*q.preset->input));
  return r;
}

}  // namespace

std::string export_model(LoadedModel& m, const ExportOptions& opts) {
  LOWBIT_CHECK(!opts.out.empty(), "export: no output path given");
  std::string note;
  if (const int64_t merged = nn::merge_lora(*m.model); merged > 0)
    note = ", " + std::to_string(merged) + " LoRA layers merged";
  const std::string tokenizer = opts.tokenizer.empty() ? m.tokenizer : opts.tokenizer;
  const std::string& tokenizer_dir = tokenizer;  // a directory or a file: io::copy_hf_tokenizer_files takes both
  switch (opts.format) {
    case ExportFormat::hf: {
      io::save_hf_model(*m.model, opts.out, {.dtype = opts.dtype, .tokenizer_dir = tokenizer_dir});
      if (m.quant.preset) {
        // The trained-for numerics travel with the weights (master weights, not fake-quantized).
        io::write_file_atomic(opts.out + "/lowbit_quant.json", quant_record(m.quant).dump(2) + "\n", "export");
        note += "; the weights are the unquantized master weights (lowbit_quant.json holds the QAT spec: export "
                "with --format compressed-tensors or gguf for the deployed numerics)";
      }
      return "HF directory " + opts.out + " (" + std::string(dtype_name(opts.dtype)) + note + ")";
    }
    case ExportFormat::compressed_tensors: {
      LOWBIT_CHECK(m.quant.preset, "export_model --format compressed-tensors: ", m.description,
                   " is not quantized (quantize it first: `quantize MODEL --preset NAME ...`)");
      (void)io::compressed_tensors_scheme(*m.quant.preset);  // reject an inexpressible preset before converting
      bool converted = true;
      for (auto& [name, l] : quant::prepared_layers(*m.model)) converted = converted && l->converted();
      if (!converted) quant::convert(*m.model);
      io::save_compressed_tensors(*m.model, opts.out, {.dtype = opts.dtype, .tokenizer_dir = tokenizer_dir});
      return "compressed-tensors directory " + opts.out + " (" + m.quant.preset->name + note + ")";
    }
    case ExportFormat::gguf: {
      LOWBIT_CHECK(!tokenizer.empty(), "export_model --format gguf: no tokenizer found for ", m.description,
                   "; give --tokenizer");
      io::GgufSaveOptions g{.type = io::parse_gguf_save_type(opts.gguf_type), .tokenizer = tokenizer};
      if (m.quant.preset) {
        // The trained-for numerics travel with the file; a GGUF type other than the QAT format
        // is said out loud, never silently swapped in.
        const quant::QuantPreset& p = *m.quant.preset;
        const nlohmann::json record = quant_record(m.quant);
        for (const auto& [key, value] : record.items())
          g.extra.emplace_back("lowbit.quant." + key, io::GgufValue::string(value.is_string() ? value.get<std::string>()
                                                                                              : value.dump()));
        const bool same = (p.weight.format == quant::Format::gguf_q4_0 && g.type == io::GgmlType::q4_0) ||
                          (p.weight.format == quant::Format::gguf_q8_0 && g.type == io::GgmlType::q8_0);
        note += same ? "; the QAT format, " + p.name
                     : "; WARNING: trained for " + p.name + ", whose numerics " + opts.gguf_type +
                           " does not reproduce (use --gguf-type q4_0 / q8_0 after GGUF_Q4_0 / GGUF_Q8_0 QAT, or "
                           "--format compressed-tensors)";
      }
      io::save_gguf(*m.model, opts.out, g);
      return "GGUF file " + opts.out + " (" + opts.gguf_type + note + ")";
    }
  }
  LOWBIT_FAIL("export: unknown format");
}

}  // namespace lowbit::train
