// Loss and gradients of the whole model against HF transformers (loss.backward() on the fixtures).
#include "io/safetensors.h"
#include "model/training.h"
#include "model_fixtures.h"

namespace olmo {
namespace {

// fixtures/README.md: a correct f32 implementation agrees to ~1e-5 on the loss and ~1e-4 on
// gradients; the bars are 1e-5 and 1e-3 relative.
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
                         testing::FixtureTestName());

TEST(Training, GradientsAccumulateAndScale) {
    Model model = Model::load(testing::shared_dir() + "/fixtures/olmo-hybrid-tiny");
    SafetensorsReader ref = SafetensorsReader::open(
        testing::shared_dir() + "/fixtures/olmo-hybrid-tiny/reference.safetensors");
    const Tensor ids = ref.get("input_ids").view();
    OwnedTensor targets = next_token_targets(ids);
    Arena arena;
    ModelWeights once(model.config(), Device::cpu, DType::f32),
        twice(model.config(), Device::cpu, DType::f32);
    ops_fill_zero(once);
    ops_fill_zero(twice);
    forward_backward(model, ids, targets, once, 1.0f, {}, arena);
    forward_backward(model, ids, targets, twice, 0.25f, {}, arena);
    forward_backward(model, ids, targets, twice, 0.75f, {}, arena);
    EXPECT_TRUE(testing::close(twice.flat(), once.flat(), 1e-6));
}

}  // namespace
}  // namespace olmo

namespace olmo {
namespace {

// Document masking: a row "A <sep> B" trains exactly like A<sep> and B run as separate sequences
// (loss and every gradient), for a hybrid (conv, GDN state, attention) and for Olmo 3 (RoPE
// positions, window).
TEST(DocumentMasking, EqualsTheDocumentsRunSeparately) {
    for (const char* name : {"olmo-hybrid-tiny", "olmo3-tiny"}) {
        const std::string dir = testing::shared_dir() + "/fixtures/" + name;
        Model model = Model::load(dir);
        SafetensorsReader ref = SafetensorsReader::open(dir + "/reference.safetensors");
        const Tensor all = ref.get("input_ids").view();
        const int64_t T = all.size(1), cut = 10;  // the separator sits at position 10
        std::vector<int32_t> row(T);
        for (int64_t t = 0; t < T; ++t) row[t] = int32_t(all.as<int64_t>()[t]);
        int32_t sep = 0;
        while (std::find(row.begin(), row.end(), sep) != row.end()) ++sep;
        row[cut] = sep;
        auto tensor = [](const std::vector<int32_t>& v) {
            OwnedTensor t(DType::i32, {1, int64_t(v.size())});
            std::copy(v.begin(), v.end(), t->as<int32_t>());
            return t;
        };
        Arena arena;
        LossOptions masked;
        masked.document_separator = sep;
        ModelWeights g_masked(model.config(), Device::cpu, DType::f32),
            g_split(model.config(), Device::cpu, DType::f32);
        ops_fill_zero(g_masked);
        ops_fill_zero(g_split);
        OwnedTensor ids = tensor(row);
        const LossResult m =
            forward_backward(model, ids, next_token_targets(ids), g_masked, 1.0f, masked, arena);
        // The first document keeps its last target (the second document's first token), as in the
        // row.
        std::vector<int32_t> a(row.begin(), row.begin() + cut + 1),
            ta(row.begin() + 1, row.begin() + cut + 2);
        std::vector<int32_t> b(row.begin() + cut + 1, row.end());
        OwnedTensor ida = tensor(a), tga = tensor(ta), idb = tensor(b);
        const double n = double(T - 1), na = double(a.size()), nb = double(b.size() - 1);
        const LossResult ra = forward_backward(model, ida, tga, g_split, float(na / n), {}, arena);
        const LossResult rb = forward_backward(model, idb, next_token_targets(idb), g_split,
                                               float(nb / n), {}, arena);
        EXPECT_NEAR(m.loss, (ra.loss * na + rb.loss * nb) / n, 1e-6 * m.loss) << name;
        EXPECT_TRUE(testing::close(g_masked.flat(), g_split.flat(), 1e-5)) << name;
        // Without masking the second document sees the first: a different loss.
        const LossResult plain = evaluate_loss(model, ids, next_token_targets(ids), {}, arena);
        EXPECT_GT(std::fabs(plain.loss - m.loss), 1e-4) << name;
    }
}

}  // namespace
}  // namespace olmo
