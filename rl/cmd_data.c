/* cmd_data: `grpo data arith`: writes the synthetic arithmetic task of the
 * tiny demo as JSONL (see rl/task_arith.h and docs/tiny-arith.md). */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "cmd.h"
#include "task_arith.h"

int cmd_data(int argc, char **argv) {
    CliOpt opts[] = {
        {"--out", "FILE", NULL, "output JSONL file (required; - for stdout)", 0},
        {"--n", "N", "1000", "number of problems", 0},
        {"--seed", "N", "1", "seed (the demo uses 1 for train, 2 for test, 3 for SFT)", 0},
        {"--min-steps", "N", "2", "fewest operations per problem", 0},
        {"--max-steps", "N", "3", "most operations per problem", 0},
        {"--max-value", "N", "30", "the running value stays within [0, N]", 0},
        {"--max-operand", "N", "9", "amounts added or subtracted are within [1, N]", 0},
        {"--p-wrong", "P", "0", "share of solutions with a wrong step (for imperfect SFT data)", 0},
        {"--p-noformat", "P", "0", "share of solutions without think/answer tags", 0},
        {0}};
    CliSpec spec = {"grpo data arith --out FILE [options]",
                    "Writes multi-step arithmetic word problems with a chain of thought as JSONL rows\n"
                    "{\"question\", \"answer\", \"solution\"}.",
                    opts, 1, 1};
    const char *pos[1];
    int npos, rc = cli_parse(&spec, argc, argv, pos, &npos);
    if (rc) return rc == CLI_HELP ? 0 : 2;
    if (strcmp(pos[0], "arith")) {
        fprintf(stderr, "grpo data: unknown task '%s' (known: arith)\n", pos[0]);
        return 2;
    }
    long n, seed, mins, maxs, maxv, maxo;
    double pw, pf;
    if (cli_require(&spec, "--out") || cli_long(&spec, "--n", &n) || cli_long(&spec, "--seed", &seed) ||
        cli_long(&spec, "--min-steps", &mins) || cli_long(&spec, "--max-steps", &maxs) ||
        cli_long(&spec, "--max-value", &maxv) || cli_long(&spec, "--max-operand", &maxo) || cli_double(&spec, "--p-wrong", &pw) ||
        cli_double(&spec, "--p-noformat", &pf))
        return 2;
    if (n < 0 || mins < 1 || maxs < mins || maxs > 8 || maxv < 10 || maxo < 1 || maxo > maxv || pw < 0 || pw > 1 || pf < 0 || pf > 1) {
        fprintf(stderr, "grpo data arith: need n >= 0, 1 <= min-steps <= max-steps <= 8, max-value >= 10, 1 <= max-operand <= max-value, "
                        "probabilities in [0, 1]\n");
        return 2;
    }
    ArithOpts o = {(int)mins, (int)maxs, (int)maxv, (int)maxo, pw, pf};
    const char *out = cli_str(&spec, "--out");
    FILE *f = strcmp(out, "-") ? fopen(out, "w") : stdout;
    if (!f) { perror(out); return 1; }
    arith_write_jsonl(f, (uint64_t)seed, n, &o);
    if (f != stdout && fclose(f)) { perror(out); return 1; }
    return 0;
}
