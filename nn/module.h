// Module: a tree of named parameters and submodules. The dotted names (e.g.
// "model.layers.0.self_attn.q_proj.weight") are exactly the Hugging Face checkpoint keys, so
// loading and saving never needs a name map. Modules are plain, non-copyable classes held by
// unique_ptr; parameters are Tensor handles shared with whoever registered them.
#pragma once
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "lowbit/engine/tensor.h"

namespace lowbit::nn {

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // Every parameter below this module, depth first in registration order, with dotted names.
  std::vector<std::pair<std::string, Tensor>> named_parameters(const std::string& prefix = "") const;
  std::vector<Tensor> parameters() const;
  // Every module below this one (itself first, as ""), depth first, with dotted names.
  std::vector<std::pair<std::string, Module*>> named_modules(const std::string& prefix = "");
  int64_t num_parameters() const;
  // The parameter with this dotted name; throws naming it when absent.
  Tensor parameter(const std::string& dotted_name) const;

  // Training mode switches behaviour such as activation checkpointing; recursive.
  void train(bool on = true);
  void eval() { train(false); }
  bool is_training() const { return training_; }

 protected:
  // Registers t (made a leaf that requires grad) and returns it.
  Tensor register_parameter(const std::string& name, Tensor t);
  template <class M>
  M& register_module(const std::string& name, std::unique_ptr<M> m) {
    M& ref = *m;
    add_child(name, std::move(m));
    return ref;
  }
  // Swaps the tensor registered under name for t (made a leaf; requires_grad as given).
  Tensor replace_parameter(const std::string& name, Tensor t, bool requires_grad);
  // Deletes the child module registered under name (throws when there is none).
  void remove_module(const std::string& name);

 private:
  void add_child(const std::string& name, std::unique_ptr<Module> m);
  void check_name(const std::string& name) const;

  std::vector<std::pair<std::string, Tensor>> params_;
  std::vector<std::pair<std::string, std::unique_ptr<Module>>> children_;
  bool training_ = true;
};

// Submodules named "0", "1", ... in order, as HF names its `layers.N`.
template <class M>
class ModuleList : public Module {
 public:
  M& append(std::unique_ptr<M> m) {
    items_.push_back(&register_module(std::to_string(items_.size()), std::move(m)));
    return *items_.back();
  }
  size_t size() const { return items_.size(); }
  M& operator[](size_t i) const { return *items_.at(i); }
  auto begin() const { return items_.begin(); }
  auto end() const { return items_.end(); }

 private:
  std::vector<M*> items_;
};

}  // namespace lowbit::nn
