#include "lowbit/train/loss_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "lowbit/io/file_io.h"

namespace lowbit::train {

namespace {

using Series = std::map<int64_t, double>;  // step -> value

struct Panel {
  double x0, y0, w, h;      // pixel box of the plot area
  double smin, smax;        // step range
  double vmin, vmax;        // value range
  double px(double step) const { return x0 + (step - smin) / std::max(smax - smin, 1.0) * w; }
  double py(double v) const { return y0 + h - (v - vmin) / std::max(vmax - vmin, 1e-300) * h; }
};

std::string fmt(double v) {
  char b[32];
  std::snprintf(b, sizeof b, "%.4g", v);
  return b;
}

void range_of(const std::vector<const Series*>& ss, double* lo, double* hi) {
  *lo = 1e300;
  *hi = -1e300;
  for (const Series* s : ss)
    for (const auto& [k, v] : *s)
      if (std::isfinite(v)) *lo = std::min(*lo, v), *hi = std::max(*hi, v);
  if (*lo > *hi) *lo = 0, *hi = 1;
  if (*hi - *lo < 1e-12 * std::max(1.0, std::abs(*hi))) *lo -= 0.5, *hi += 0.5;
  const double pad = 0.05 * (*hi - *lo);
  *lo -= pad;
  *hi += pad;
}

void axes(std::ostringstream& os, const Panel& p, const std::string& ylabel) {
  os << "<rect x='" << p.x0 << "' y='" << p.y0 << "' width='" << p.w << "' height='" << p.h
     << "' fill='none' stroke='#888'/>\n";
  for (int i = 0; i <= 4; ++i) {
    const double v = p.vmin + (p.vmax - p.vmin) * i / 4, y = p.py(v);
    os << "<line x1='" << p.x0 << "' x2='" << p.x0 + p.w << "' y1='" << y << "' y2='" << y
       << "' stroke='#eee'/><text x='" << p.x0 - 6 << "' y='" << y + 4 << "' text-anchor='end'>" << fmt(v)
       << "</text>\n";
    const double s = p.smin + (p.smax - p.smin) * i / 4;
    os << "<text x='" << p.px(s) << "' y='" << p.y0 + p.h + 16 << "' text-anchor='middle'>"
       << static_cast<int64_t>(std::llround(s)) << "</text>\n";
  }
  os << "<text x='" << p.x0 + 4 << "' y='" << p.y0 - 6 << "'>" << ylabel << "</text>\n";
}

void line(std::ostringstream& os, const Panel& p, const Series& s, const char* color, bool dots) {
  if (s.empty()) return;
  os << "<polyline fill='none' stroke='" << color << "' stroke-width='1.5' points='";
  for (const auto& [k, v] : s)
    if (std::isfinite(v)) os << p.px(static_cast<double>(k)) << "," << p.py(v) << " ";
  os << "'/>\n";
  if (dots)
    for (const auto& [k, v] : s)
      if (std::isfinite(v))
        os << "<circle cx='" << p.px(static_cast<double>(k)) << "' cy='" << p.py(v) << "' r='3' fill='" << color
           << "'/>\n";
}

std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) out += c == '<' ? "&lt;" : c == '>' ? "&gt;" : c == '&' ? "&amp;" : std::string(1, c);
  return out;
}

}  // namespace

std::string loss_plot_svg(const std::string& metrics_jsonl, const std::string& title) {
  Series train, val, lr;
  std::istringstream in(metrics_jsonl);
  std::string l;
  while (std::getline(in, l)) {
    const auto j = nlohmann::json::parse(l, nullptr, false);
    if (!j.is_object() || !j.contains("step") || !j["step"].is_number_integer()) continue;  // a torn last line
    const int64_t step = j["step"].get<int64_t>();
    if (j.contains("loss") && j["loss"].is_number()) train[step] = j["loss"].get<double>();
    if (j.contains("lr") && j["lr"].is_number()) lr[step] = j["lr"].get<double>();
    if (j.contains("val_loss") && j["val_loss"].is_number()) val[step] = j["val_loss"].get<double>();
  }
  double smin = 1e300, smax = -1e300;
  for (const Series* s : {&train, &val, &lr})
    if (!s->empty()) smin = std::min(smin, static_cast<double>(s->begin()->first)), smax = std::max(smax, static_cast<double>(s->rbegin()->first));
  if (smin > smax) smin = 0, smax = 1;
  Panel loss{70, 40, 620, 260, smin, smax, 0, 1}, rate{70, 350, 620, 110, smin, smax, 0, 1};
  range_of({&train, &val}, &loss.vmin, &loss.vmax);
  range_of({&lr}, &rate.vmin, &rate.vmax);
  std::ostringstream os;
  os << "<svg xmlns='http://www.w3.org/2000/svg' width='720' height='500' font-family='sans-serif' font-size='11'>\n"
     << "<rect width='720' height='500' fill='white'/>\n<text x='360' y='18' text-anchor='middle' font-size='14'>"
     << escape(title) << "</text>\n";
  axes(os, loss, "loss");
  line(os, loss, train, "#1f77b4", false);
  line(os, loss, val, "#d62728", true);
  os << "<text x='560' y='58' fill='#1f77b4'>train loss</text><text x='560' y='74' fill='#d62728'>val loss</text>\n";
  axes(os, rate, "learning rate");
  line(os, rate, lr, "#2ca02c", false);
  os << "<text x='380' y='492' text-anchor='middle'>step</text>\n</svg>\n";
  return os.str();
}

std::string write_loss_plot(const std::string& run_dir, const std::string& title) {
  const std::string path = run_dir + "/loss.svg";
  io::write_file_atomic(path, loss_plot_svg(io::read_file(run_dir + "/metrics.jsonl", "loss plot"), title), "loss plot");
  return path;
}

}  // namespace lowbit::train
