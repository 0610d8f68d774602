/* fuzz_config: libFuzzer target for config_parse. Accepted configs also go
 * through the derived numbers (rope frequencies, parameter counts) and
 * config_save, as model_create and model_save would use them. */
#include <stdint.h>
#include <stdlib.h>

#include "model/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    ModelConfig c;
    Err err = {0};
    if (config_parse(&c, (const char *)data, size, "fuzz-config.json", &err)) return 0;
    if (c.qk_rope_head_dim <= 1 << 16) {
        float *f = malloc(sizeof(float) * (c.qk_rope_head_dim / 2 + 1));
        config_rope_inv_freq(&c, f);
        free(f);
    }
    double t, a;
    config_param_counts(&c, &t, &a);
    config_save(&c, "/dev/null", &err);
    return 0;
}
