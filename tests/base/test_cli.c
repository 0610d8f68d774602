/* test_cli: the option parser behind every `grpo` subcommand. */
#include <string.h>

#include "rl/cli.h"
#include "test.h"

int main(void) {
    CliOpt opts[] = {{"--seed", "N", "0", "random seed", 0}, {"--fast", NULL, NULL, "a flag", 0}, {0}};
    CliSpec spec = {"grpo x [options] FILE", "test", opts, 1, 1};
    const char *pos[2];
    int npos;
    char *argv1[] = {"x", "--seed=7", "--fast", "file"};
    CHECK(cli_parse(&spec, 4, argv1, pos, &npos) == CLI_OK, "parse");
    long seed = -1;
    CHECK(cli_long(&spec, "--seed", &seed) == CLI_OK && seed == 7, "seed %ld", seed);
    CHECK(cli_flag(&spec, "--fast"), "flag");
    CHECK(npos == 1 && !strcmp(pos[0], "file"), "positional");
    char *argv2[] = {"x", "--bogus", "file"};
    CHECK(cli_parse(&spec, 3, argv2, pos, &npos) == CLI_BAD, "unknown option rejected");
    char *argv3[] = {"x", "--seed", "abc", "file"};
    CHECK(cli_parse(&spec, 4, argv3, pos, &npos) == CLI_OK, "parse");
    CHECK(cli_long(&spec, "--seed", &seed) == CLI_BAD, "non-integer rejected");
    char *argv4[] = {"x"};
    CHECK(cli_parse(&spec, 1, argv4, pos, &npos) == CLI_BAD, "missing positional");
    char *argv5[] = {"x", "file", "--seed"};
    CHECK(cli_parse(&spec, 3, argv5, pos, &npos) == CLI_BAD, "missing value");
    return test_report();
}
