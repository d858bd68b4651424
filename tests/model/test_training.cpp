// Loss and gradients of the whole model against HF transformers (loss.backward() on the fixtures).
#include "io/safetensors.h"
#include "model/training.h"
#include "model_fixtures.h"

namespace olmo {
namespace {

// fixtures/README.md: a correct f32 implementation agrees to ~1e-5 on the loss and ~1e-4 on gradients;
// the bars are 1e-5 and 1e-3 relative.
constexpr double kLossTol = 1e-5;
constexpr double kGradTol = 1e-3;

class HfGradients : public ::testing::TestWithParam<std::string> {};

TEST_P(HfGradients, LossAndEveryParameterGradient) {
    const std::string dir = GetParam();
    Model model = Model::load(dir);
    SafetensorsReader ref = SafetensorsReader::open(dir + "/reference.safetensors");
    const Tensor ids = ref.get("input_ids").view();
    OwnedTensor targets = next_token_targets(ids);
    ModelWeights grads(model.config(), Device::cpu, DType::f32);
    ops_fill_zero(grads);
    Arena arena;
    LossOptions opt;
    opt.logits_chunk = 37;  // several chunks, one of them partial
    const LossResult r = forward_backward(model, ids, targets, grads, 1.0f, opt, arena);
    const double ref_loss = ref.get("loss").view().f32()[0];
    EXPECT_NEAR(r.loss, ref_loss, kLossTol * std::abs(ref_loss));
    EXPECT_EQ(r.counted, ids.size(0) * (ids.size(1) - 1));
    int compared = 0;
    for (size_t i = 0; i < grads.table().size(); ++i) {
        const std::string name = grads.table()[i].name;
        const SafetensorsEntry* e = ref.find("grad." + name);
        ASSERT_NE(e, nullptr) << "reference has no grad." << name;
        EXPECT_TRUE(testing::close(grads.params()[i], e->view(), kGradTol)) << name;
        ++compared;
    }
    int in_reference = 0;
    for (const auto& e : ref.entries()) in_reference += e.name.rfind("grad.", 0) == 0;
    EXPECT_EQ(compared, in_reference);
    // The loss alone (no gradients) is the same number.
    EXPECT_NEAR(evaluate_loss(model, ids, targets, opt, arena).loss, r.loss, 1e-12 + 1e-9 * r.loss);
}

INSTANTIATE_TEST_SUITE_P(Fixtures, HfGradients, ::testing::ValuesIn(testing::hf_fixture_dirs()),
                         [](const auto& info) {
                             std::string n = testing::fixture_name(info.param);
                             for (char& c : n)
                                 if (!isalnum(static_cast<unsigned char>(c))) c = '_';
                             return n;
                         });

TEST(Training, GradientsAccumulateAndScale) {
    Model model = Model::load(testing::shared_dir() + "/fixtures/olmo-hybrid-tiny");
    SafetensorsReader ref = SafetensorsReader::open(testing::shared_dir() + "/fixtures/olmo-hybrid-tiny/reference.safetensors");
    const Tensor ids = ref.get("input_ids").view();
    OwnedTensor targets = next_token_targets(ids);
    Arena arena;
    ModelWeights once(model.config(), Device::cpu, DType::f32), twice(model.config(), Device::cpu, DType::f32);
    ops_fill_zero(once);
    ops_fill_zero(twice);
    forward_backward(model, ids, targets, once, 1.0f, {}, arena);
    forward_backward(model, ids, targets, twice, 0.25f, {}, arena);
    forward_backward(model, ids, targets, twice, 0.75f, {}, arena);
    EXPECT_TRUE(testing::close(twice.flat(), once.flat(), 1e-6));
}

}  // namespace
}  // namespace olmo
