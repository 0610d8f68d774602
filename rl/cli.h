/* cli: option tables for `grpo` subcommands.
 *
 * Each subcommand declares a CliOpt table; cli_parse fills in values, prints
 * --help (every option with its default) and rejects unknown options with
 * exit code 2. It is not a general getopt: options are spelled as in the table
 * (`--name V`, `--name=V`, or a short `-k V`), flags take no value,
 * positionals are collected in order. */
#ifndef GRPO_CLI_H
#define GRPO_CLI_H

typedef struct CliOpt {
    const char *name;  /* "--seed" */
    const char *meta;  /* value placeholder ("N"), NULL for a boolean flag */
    const char *def;   /* default value (also shown in help); NULL = none/required */
    const char *help;
    const char *val;   /* out: given value, else def; flags "1" when present */
} CliOpt;

typedef struct CliSpec {
    const char *usage;    /* "grpo init --config FILE --out DIR [options]" */
    const char *summary;  /* one paragraph */
    CliOpt *opts;         /* terminated by {0} */
    int min_pos, max_pos; /* allowed positional count */
} CliSpec;

enum { CLI_OK = 0, CLI_HELP = 1, CLI_BAD = 2 };

/* Parses argv[1..] (argv[0] is the subcommand). Positionals go to pos[].
 * Returns CLI_OK, CLI_HELP (help printed to stdout) or CLI_BAD (message on stderr). */
int cli_parse(const CliSpec *spec, int argc, char **argv, const char **pos, int *npos);
const char *cli_str(const CliSpec *spec, const char *name);
/* Numeric getters: on a malformed value print "--name: ..." and return CLI_BAD. */
int cli_long(const CliSpec *spec, const char *name, long *out);
int cli_double(const CliSpec *spec, const char *name, double *out);
int cli_flag(const CliSpec *spec, const char *name);
/* Requires the option to have a value; prints an error and returns CLI_BAD if not. */
int cli_require(const CliSpec *spec, const char *name);

#endif
