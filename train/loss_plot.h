// The run's loss plot: an SVG of training loss and validation loss against the step, with the
// learning rate in a second panel, drawn from metrics.jsonl (the last record of a step wins, so
// steps replayed after a resume are drawn once). Self-contained SVG, no script, no fonts needed.
#pragma once
#include <string>

namespace lowbit::train {

// metrics.jsonl text -> SVG document.
std::string loss_plot_svg(const std::string& metrics_jsonl, const std::string& title);
// Reads <run>/metrics.jsonl and writes <run>/loss.svg atomically; returns the SVG path.
std::string write_loss_plot(const std::string& run_dir, const std::string& title);

}  // namespace lowbit::train
