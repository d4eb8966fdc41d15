#include "lowbit/nn/module.h"

namespace lowbit::nn {

std::vector<std::pair<std::string, Tensor>> Module::named_parameters(const std::string& prefix) const {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& [name, t] : params_) out.emplace_back(prefix + name, t);
  for (const auto& [name, child] : children_) {
    auto sub = child->named_parameters(prefix + name + ".");
    out.insert(out.end(), sub.begin(), sub.end());
  }
  return out;
}

std::vector<std::pair<std::string, Module*>> Module::named_modules(const std::string& prefix) {
  std::vector<std::pair<std::string, Module*>> out{{prefix, this}};
  for (const auto& [name, child] : children_) {
    auto sub = child->named_modules(prefix.empty() ? name : prefix + "." + name);
    out.insert(out.end(), sub.begin(), sub.end());
  }
  return out;
}

std::vector<Tensor> Module::parameters() const {
  std::vector<Tensor> out;
  for (auto& [name, t] : named_parameters()) out.push_back(t);
  return out;
}

int64_t Module::num_parameters() const {
  int64_t n = 0;
  for (auto& [name, t] : named_parameters()) n += t.numel();
  return n;
}

Tensor Module::parameter(const std::string& dotted_name) const {
  for (auto& [name, t] : named_parameters())
    if (name == dotted_name) return t;
  LOWBIT_FAIL("module has no parameter '", dotted_name, "'");
}

void Module::train(bool on) {
  training_ = on;
  for (auto& [name, child] : children_) child->train(on);
}

void Module::check_name(const std::string& name) const {
  LOWBIT_CHECK(!name.empty() && name.front() != '.' && name.back() != '.', "invalid module member name '", name, "'");
  for (const auto& [n, t] : params_) LOWBIT_CHECK(n != name, "duplicate parameter name '", name, "'");
  for (const auto& [n, c] : children_) LOWBIT_CHECK(n != name, "duplicate submodule name '", name, "'");
}

Tensor Module::register_parameter(const std::string& name, Tensor t) {
  check_name(name);
  LOWBIT_CHECK(t.defined(), "register_parameter('", name, "'): undefined tensor");
  LOWBIT_CHECK(t.is_leaf(), "register_parameter('", name, "'): parameters must be leaves; detach() first");
  if (is_float(t.dtype())) t.set_requires_grad(true);
  params_.emplace_back(name, t);
  return t;
}

void Module::add_child(const std::string& name, std::unique_ptr<Module> m) {
  check_name(name);
  LOWBIT_CHECK(m != nullptr, "register_module('", name, "'): null module");
  children_.emplace_back(name, std::move(m));
}

Tensor Module::replace_parameter(const std::string& name, Tensor t, bool requires_grad) {
  for (auto& [n, p] : params_)
    if (n == name) {
      t = t.detach();
      t.set_requires_grad(requires_grad);
      p = t;
      return t;
    }
  LOWBIT_FAIL("replace_parameter: no parameter named '", name, "'");
}

void Module::remove_module(const std::string& name) {
  for (auto it = children_.begin(); it != children_.end(); ++it)
    if (it->first == name) {
      children_.erase(it);
      return;
    }
  LOWBIT_FAIL("remove_module: no submodule named '", name, "'");
}

}  // namespace lowbit::nn
