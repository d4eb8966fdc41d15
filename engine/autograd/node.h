// The autograd graph. Each differentiable result holds a Node (its grad_fn); a Node's edges
// point to the Nodes of its inputs (an AccumulateGrad node for a leaf that requires grad).
// Every Node has exactly one output. Saved tensors are detached copies of the handles (no
// grad_fn, so no reference cycles) and carry the storage version seen at save time.
#pragma once
#include <functional>
#include <memory>
#include <vector>

#include "lowbit/engine/tensor.h"

namespace lowbit {

class Node;

struct Edge {
  std::shared_ptr<Node> node;  // null when the input needs no gradient
};

struct InputMeta {
  Shape shape;
  DType dtype;
  Device device;
};

class SavedTensor {
 public:
  SavedTensor() = default;
  explicit SavedTensor(const Tensor& t);
  // Throws if the graph was freed or the tensor was modified in place since it was saved.
  Tensor unpack(const char* op) const;
  void release() { t_ = Tensor(); released_ = true; }

 private:
  Tensor t_;
  uint64_t version_ = 0;
  bool released_ = false;
};

class Node {
 public:
  virtual ~Node();
  Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  virtual const char* name() const = 0;
  // grad: gradient w.r.t. this node's output. Returns one gradient per input edge (undefined
  // where no gradient flows); the engine reduces broadcast shapes and casts dtypes.
  virtual std::vector<Tensor> apply(const Tensor& grad) = 0;
  virtual void release_saved() {}

  std::vector<Edge> next_edges;
  std::vector<InputMeta> input_meta;

 private:
  friend void teardown_children(Node& n, std::vector<std::shared_ptr<Node>>& out);
};

// Node for leaves: accumulates into the leaf's .grad and runs its hooks.
class AccumulateGrad final : public Node {
 public:
  explicit AccumulateGrad(std::shared_ptr<TensorImpl> leaf) : leaf_(std::move(leaf)) {}
  const char* name() const override { return "AccumulateGrad"; }
  std::vector<Tensor> apply(const Tensor& grad) override;

 private:
  std::shared_ptr<TensorImpl> leaf_;
};

struct BackwardArgs {
  const Tensor& grad;
  const std::vector<SavedTensor>& saved_tensors;
  const std::vector<bool>& needs;  // needs[i]: input i wants a gradient
  const char* op;
  Tensor saved(size_t i) const { return saved_tensors.at(i).unpack(op); }
  bool needs_grad(size_t i) const { return needs.at(i); }
};
using BackwardFn = std::function<std::vector<Tensor>(const BackwardArgs&)>;

// A node whose backward is a function of (grad, saved tensors). Ops use it through record().
class FunctionNode final : public Node {
 public:
  FunctionNode(const char* name, BackwardFn fn) : name_(name), fn_(std::move(fn)) {}
  const char* name() const override { return name_; }
  std::vector<Tensor> apply(const Tensor& grad) override;
  void release_saved() override;

  std::vector<SavedTensor> saved;
  std::vector<bool> needs;

 private:
  const char* name_;
  BackwardFn fn_;
  bool released_ = false;
};

// True when grad mode is on and any input requires grad.
bool any_requires_grad(std::initializer_list<const Tensor*> inputs);
bool any_requires_grad(const std::vector<Tensor>& inputs);

// Attaches a backward node to `out` when any input requires grad (and grad mode is on).
// `saved` are tensors the backward needs. Returns `out`.
Tensor record(const char* op, Tensor out, const std::vector<Tensor>& inputs,
              const std::vector<Tensor>& saved, BackwardFn backward);

// The edge that routes a gradient into `t` (its grad_fn, or its leaf accumulator).
Edge gradient_edge(const Tensor& t);

// Runs backward from roots with the given output gradients.
void run_backward(const std::vector<Tensor>& roots, const std::vector<Tensor>& grads, bool retain_graph);

}  // namespace lowbit
