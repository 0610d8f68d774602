/* test_report: `grpo report` and `grpo runs` on a SYNTHETIC run.
 *
 * Writes runs/synthetic-demo/rollouts.db with tests/store/synth.c, runs the
 * grpo binary, then parses the HTML as XML (well-formed: every element
 * closed, attributes quoted, only the five XML entities and numeric ones) and
 * compares every plotted series with the database (its own SQL on the views,
 * from the series' data-source), the pixel coordinates with the numbers, the
 * router heat map and a few series with the generator itself, and the sampled
 * completions with their rows. With an argument DIR it keeps the run there
 * (used to make the screenshot in docs/). */
#include <math.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "rl/store.h"
#include "synth.h"
#include "test.h"

static const SynthCfg cfg = {.prompts = 8, .group = 8, .nlayers = 4, .nexperts = 16, .steps = 60,
                             .eval_every = 10};

/* ---- a minimal XML reader: enough to check well-formedness and get attributes */

enum { MAXATTR = 24, MAXDEPTH = 64 };
typedef struct Elem {
    char name[32];
    int nattr;
    char *key[MAXATTR], *val[MAXATTR];  /* values with entities decoded */
} Elem;

typedef void (*ElemFn)(const Elem *e, const Elem *parent_svg, void *ctx);

static const char *attr(const Elem *e, const char *k) {
    for (int i = 0; e && i < e->nattr; i++)
        if (!strcmp(e->key[i], k)) return e->val[i];
    return NULL;
}

/* Decodes entities of s[0..n) into out; returns -1 on a bad entity. */
static int decode(const char *s, long n, char *out) {
    long o = 0;
    for (long i = 0; i < n; i++) {
        if (s[i] != '&') { out[o++] = s[i]; continue; }
        const char *semi = memchr(s + i, ';', n - i);
        if (!semi) return -1;
        long len = semi - (s + i) + 1;
        if (!strncmp(s + i, "&amp;", len)) out[o++] = '&';
        else if (!strncmp(s + i, "&lt;", len)) out[o++] = '<';
        else if (!strncmp(s + i, "&gt;", len)) out[o++] = '>';
        else if (!strncmp(s + i, "&quot;", len)) out[o++] = '"';
        else if (!strncmp(s + i, "&#39;", len)) out[o++] = '\'';
        else if (s[i + 1] == '#') {
            long cp = strtol(s + i + 2, NULL, 10);
            if (cp <= 0) return -1;
            out[o++] = '?';  /* the checks below never need these decoded */
        } else return -1;
        i += len - 1;
    }
    out[o] = 0;
    return 0;
}

/* Returns 0 if well-formed, calling fn for every start tag; text of elements
 * with class "completion" is collected by the caller through fn on "#text". */
static int xml_walk(const char *doc, ElemFn fn, void *ctx, char *why, size_t nwhy) {
    char stack[MAXDEPTH][32];
    Elem svg_stack[8];
    int depth = 0, nsvg = 0, roots = 0;
    const char *p = doc;
    while (*p) {
        if (*p != '<') {
            const char *lt = strchr(p, '<');
            long n = lt ? lt - p : (long)strlen(p);
            char *tmp = malloc(n + 1);
            if (decode(p, n, tmp)) { snprintf(why, nwhy, "bad entity near %.40s", p); free(tmp); return -1; }
            Elem text = {"#text", 1, {"text"}, {tmp}};
            if (depth) fn(&text, NULL, ctx);
            free(tmp);
            p += n;
            continue;
        }
        if (!strncmp(p, "<!DOCTYPE", 9) || !strncmp(p, "<!--", 4)) {
            const char *end = strstr(p, p[2] == '-' ? "-->" : ">");
            if (!end) { snprintf(why, nwhy, "unterminated <!"); return -1; }
            p = end + 1;
            continue;
        }
        if (p[1] == '/') {  /* end tag */
            const char *gt = strchr(p, '>');
            if (!gt || !depth) { snprintf(why, nwhy, "stray end tag %.30s", p); return -1; }
            if ((size_t)(gt - p - 2) != strlen(stack[depth - 1]) || strncmp(p + 2, stack[depth - 1], gt - p - 2)) {
                snprintf(why, nwhy, "</%.*s> closes <%s>", (int)(gt - p - 2), p + 2, stack[depth - 1]);
                return -1;
            }
            if (!strcmp(stack[depth - 1], "svg") && nsvg > 0) {
                nsvg--;
                for (int i = 0; i < svg_stack[nsvg].nattr; i++) free(svg_stack[nsvg].key[i]), free(svg_stack[nsvg].val[i]);
            }
            depth--;
            p = gt + 1;
            continue;
        }
        Elem e = {0};
        p++;
        int n = 0;
        while (*p && !strchr(" \t\n/>", *p) && n < 31) e.name[n++] = *p++;
        if (!n) { snprintf(why, nwhy, "empty tag name"); return -1; }
        int self = 0;
        for (;;) {
            while (*p == ' ' || *p == '\n' || *p == '\t') p++;
            if (*p == '/' && p[1] == '>') { self = 1; p += 2; break; }
            if (*p == '>') { p++; break; }
            const char *k = p;
            while (*p && *p != '=' && *p != ' ' && *p != '>') p++;
            if (*p != '=' || p[1] != '"') { snprintf(why, nwhy, "<%s>: unquoted attribute near %.30s", e.name, k); return -1; }
            const char *v = p + 2, *q = strchr(v, '"');
            if (!q || memchr(v, '<', q - v)) { snprintf(why, nwhy, "<%s>: bad attribute value", e.name); return -1; }
            if (e.nattr < MAXATTR) {
                e.key[e.nattr] = strndup(k, p - k);
                e.val[e.nattr] = malloc(q - v + 1);
                if (decode(v, q - v, e.val[e.nattr])) { snprintf(why, nwhy, "<%s>: bad entity in attribute", e.name); return -1; }
                e.nattr++;
            }
            p = q + 1;
        }
        if (!depth) roots++;
        fn(&e, nsvg ? &svg_stack[nsvg - 1] : NULL, ctx);
        if (!strcmp(e.name, "svg") && !self && nsvg < 8) {
            svg_stack[nsvg++] = e;  /* keeps the attribute strings until the end */
        } else {
            for (int i = 0; i < e.nattr; i++) free(e.key[i]), free(e.val[i]);
        }
        if (!self) {
            if (depth == MAXDEPTH) { snprintf(why, nwhy, "too deep"); return -1; }
            snprintf(stack[depth++], 32, "%s", e.name);
        }
    }
    if (depth) { snprintf(why, nwhy, "<%s> not closed", stack[depth - 1]); return -1; }
    if (roots != 1) { snprintf(why, nwhy, "%d root elements", roots); return -1; }
    return 0;
}

/* ---- checks against the database ------------------------------------------------ */

typedef struct Ctx {
    sqlite3 *db;
    int series, points, cells, samples, plots_seen[32];
    int in_completion;
    char *completions;  /* all completion cells' text, for the escaping check */
    size_t clen;
} Ctx;

static const char *const key_plots[] = {
    "plot-reward=reward_per_step.reward_mean", "plot-reward=reward_per_step.reward_std",
    "plot-reward=metrics:reward", "plot-metric-reward_std=metrics:reward_std",
    "plot-components=reward_components_per_step.mean:accuracy",
    "plot-components=reward_components_per_step.mean:format",
    "plot-accuracy=reward_components_per_step.frac_positive:accuracy",
    "plot-length=length_per_step.mean_length", "plot-length=length_per_step.min_length",
    "plot-length=length_per_step.max_length", "plot-kl=metrics:kl", "plot-entropy=metrics:entropy",
    "plot-clip=metrics:clip_ratio/region_mean", "plot-lr=metrics:learning_rate",
    "plot-timings=metrics:timing_s/rollout", "plot-timings=metrics:step_time",
    "plot-zero-std=zero_std_per_step.frac_reward_zero_std",
    "plot-router-balance=router_imbalance_per_step.worst_max_over_mean", "plot-evals=evals.value:synthetic-gsm8k accuracy"};

static int parse_list(const char *s, double *out, int max) {
    int n = 0;
    char *end;
    while (s && *s && n < max) {
        out[n++] = strtod(s, &end);
        if (end == s) return -1;
        s = end;
    }
    return n;
}

/* The SQL for a data-source "VIEW.COL", "VIEW.COL:NAME" or "metrics:NAME". */
static int source_sql(const char *src, char *sql, size_t n) {
    char view[64], col[64], name[128];
    if (sscanf(src, "metrics:%127[^\n]", name) == 1)
        return snprintf(sql, n, "SELECT step, value FROM metrics WHERE name = '%s' AND value IS NOT NULL ORDER BY step", name), 0;
    if (sscanf(src, "evals.value:%127[^\n]", name) == 1)
        return snprintf(sql, n, "SELECT step, value FROM evals WHERE dataset || ' ' || metric = '%s' ORDER BY step, id", name), 0;
    int k = sscanf(src, "%63[a-z_].%63[a-z_]:%127[^\n]", view, col, name);
    if (k == 2) return snprintf(sql, n, "SELECT step, %s FROM %s WHERE %s IS NOT NULL ORDER BY step", col, view, col), 0;
    if (k == 3)
        return snprintf(sql, n, "SELECT step, %s FROM %s WHERE name = '%s' AND %s IS NOT NULL ORDER BY step", col, view, name, col), 0;
    return -1;
}

static void check_series(const Elem *e, const Elem *svg, Ctx *c) {
    const char *src = attr(e, "data-source"), *id = attr(svg, "id");
    static double x[4096], y[4096], px[4096 * 2];
    int nx = parse_list(attr(e, "data-x"), x, 4096), ny = parse_list(attr(e, "data-y"), y, 4096);
    CHECK(src && id && nx == ny && nx > 0, "series %s in %s: data-x/data-y", src, id);
    if (!src || !id || nx != ny || nx <= 0) return;
    char key[300];
    snprintf(key, sizeof key, "%s=%s", id, src);
    for (size_t i = 0; i < sizeof key_plots / sizeof key_plots[0]; i++)
        if (!strcmp(key, key_plots[i])) c->plots_seen[i] = 1;
    char sql[512];
    CHECK(source_sql(src, sql, sizeof sql) == 0, "unknown data-source %s", src);
    sqlite3_stmt *s;
    CHECK(sqlite3_prepare_v2(c->db, sql, -1, &s, NULL) == SQLITE_OK, "%s: %s", sql, sqlite3_errmsg(c->db));
    int k = 0, bad = 0;
    while (sqlite3_step(s) == SQLITE_ROW) {
        if (k < nx && (sqlite3_column_double(s, 0) != x[k] || sqlite3_column_double(s, 1) != y[k])) bad++;
        k++;
    }
    sqlite3_finalize(s);
    CHECK(k == nx && !bad, "%s %s: %d points plotted, %d in the database, %d differ", id, src, nx, k, bad);
    if (!strcmp(src, "metrics:kl") || !strcmp(src, "metrics:reward")) {  /* and the generator's own numbers */
        const char *names[SYNTH_NMETRICS];
        double values[SYNTH_NMETRICS];
        int gen_bad = 0, which = !strcmp(src, "metrics:kl") ? 4 : 0;
        for (int i = 0; i < nx; i++) {
            synth_metrics(&cfg, (long)x[i], names, values);
            gen_bad += values[which] != y[i];
        }
        CHECK(nx == cfg.steps && !gen_bad, "%s: %d of %d points differ from the generator", src, gen_bad, nx);
    }
    /* the pixels are the numbers on the axes */
    double xmin = atof(attr(svg, "data-xmin")), xmax = atof(attr(svg, "data-xmax"));
    double ymin = atof(attr(svg, "data-ymin")), ymax = atof(attr(svg, "data-ymax"));
    double px0 = atof(attr(svg, "data-px0")), px1 = atof(attr(svg, "data-px1"));
    double py0 = atof(attr(svg, "data-py0")), py1 = atof(attr(svg, "data-py1"));
    const char *pts = attr(e, "points");
    int np = 0;
    for (const char *q = pts; q && *q && np < 8192;) {
        char *end;
        px[np++] = strtod(q, &end);
        q = end + (*end == ',' || *end == ' ');
    }
    CHECK(np == 2 * nx, "%s %s: %d coordinates for %d points", id, src, np, nx);
    int off = 0;
    for (int i = 0; i < nx && 2 * i + 1 < np; i++) {
        double ex = xmax > xmin ? px0 + (x[i] - xmin) / (xmax - xmin) * (px1 - px0) : 0.5 * (px0 + px1);
        double ey = py0 + (y[i] - ymin) / (ymax - ymin) * (py1 - py0);
        off += fabs(px[2 * i] - ex) > 0.006 || fabs(px[2 * i + 1] - ey) > 0.006;
        off += y[i] < ymin || y[i] > ymax || x[i] < xmin || x[i] > xmax;
    }
    CHECK(!off, "%s %s: %d points off their axes", id, src, off);
    c->series++;
    c->points += nx;
}

static void on_elem(const Elem *e, const Elem *svg, void *vctx) {
    Ctx *c = vctx;
    if (!strcmp(e->name, "#text")) {
        if (c->in_completion) {
            size_t n = strlen(e->val[0]);
            c->completions = realloc(c->completions, c->clen + n + 1);
            memcpy(c->completions + c->clen, e->val[0], n + 1);
            c->clen += n;
        }
        return;
    }
    const char *cls = attr(e, "class");
    c->in_completion = !strcmp(e->name, "pre") && cls && !strcmp(cls, "completion");
    CHECK(!attr(e, "src") && !attr(e, "href"), "<%s> loads something: the page must be self-contained", e->name);
    CHECK(strcmp(e->name, "script") && strcmp(e->name, "link"), "<%s> in the page", e->name);
    if (!strcmp(e->name, "polyline") && cls && !strncmp(cls, "series", 6) && (!cls[6] || cls[6] == ' '))
        check_series(e, svg, c);
    if (!strcmp(e->name, "rect") && cls && !strcmp(cls, "cell")) {
        int layer = atoi(attr(e, "data-layer")), expert = atoi(attr(e, "data-expert"));
        double tokens = atof(attr(e, "data-tokens")), share = strtod(attr(e, "data-share"), NULL);
        long sum = 0;
        for (int x = 0; x < cfg.nexperts; x++) sum += synth_router_tokens(cfg.steps - 1, layer, x);
        long want = synth_router_tokens(cfg.steps - 1, layer, expert);
        CHECK(tokens == want && fabs(share - (double)want / sum) < 1e-15,
              "router cell %d/%d: %g tokens share %g, generator %ld/%ld", layer, expert, tokens, share, want, sum);
        c->cells++;
    }
    if (!strcmp(e->name, "tr") && cls && !strcmp(cls, "sample")) {
        char sql[200];
        snprintf(sql, sizeof sql, "SELECT reward FROM rollouts WHERE id = %s", attr(e, "data-rollout-id"));
        sqlite3_stmt *s;
        sqlite3_prepare_v2(c->db, sql, -1, &s, NULL);
        int found = sqlite3_step(s) == SQLITE_ROW;
        CHECK(found && sqlite3_column_double(s, 0) == strtod(attr(e, "data-reward"), NULL),
              "sample row %s reward", attr(e, "data-rollout-id"));
        sqlite3_finalize(s);
        c->samples++;
    }
}

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc(n + 1);
    s[fread(s, 1, n, f)] = 0;
    fclose(f);
    return s;
}

int main(int argc, char **argv) {
    char dir[512], run[600], db[700], cmd[2400], out[800];
    if (argc > 1) snprintf(dir, sizeof dir, "%s", argv[1]), mkdir(dir, 0755);
    else {
        snprintf(dir, sizeof dir, "/tmp/grpo-test-report-XXXXXX");
        if (!mkdtemp(dir)) { perror("mkdtemp"); return 1; }
    }
    snprintf(run, sizeof run, "%s/synthetic-demo", dir);
    mkdir(run, 0755);
    snprintf(db, sizeof db, "%s/rollouts.db", run);
    remove(db);
    Err err = {0};
    CHECK(synth_write_run(db, "synthetic-demo", &cfg, &err) == 0, "synthetic run: %s", err.msg);

    snprintf(out, sizeof out, "%s/terminal.txt", dir);
    snprintf(cmd, sizeof cmd, "'%s' report '%s' --samples 12 > '%s' 2>&1", GRPO_BIN, run, out);
    CHECK(system(cmd) == 0, "%s", cmd);
    char *term = slurp(out);
    CHECK(term && strstr(term, "report: ") && strstr(term, "reward components at the last step"),
          "terminal output:\n%s", term ? term : "(none)");
    free(term);

    snprintf(out, sizeof out, "%s/report.html", run);
    char *html = slurp(out);
    CHECK(html != NULL, "%s written", out);
    if (!html) return test_report();
    Ctx c = {0};
    sqlite3_open_v2(db, &c.db, SQLITE_OPEN_READONLY, NULL);
    char why[256] = "";
    CHECK(xml_walk(html, on_elem, &c, why, sizeof why) == 0, "HTML not well-formed: %s", why);
    for (size_t i = 0; i < sizeof key_plots / sizeof key_plots[0]; i++)
        CHECK(c.plots_seen[i], "series %s not plotted", key_plots[i]);
    CHECK(c.cells == cfg.nlayers * cfg.nexperts, "%d router cells", c.cells);
    CHECK(c.samples == 12, "%d sampled completions", c.samples);
    /* escaping: the generator's completions contain <answer>, & and a control char */
    CHECK(c.completions && strstr(c.completions, "<answer>") && strstr(c.completions, "\xc3\xa9tape"),
          "completion text survives escaping");
    CHECK(!strchr(html, '\x01'), "control characters replaced");
    printf("%d series (%d points) equal the database; %d router cells; %d sample rows\n", c.series,
           c.points, c.cells, c.samples);
    sqlite3_close(c.db);
    free(c.completions);
    free(html);

    /* grpo runs */
    snprintf(out, sizeof out, "%s/runs.txt", dir);
    snprintf(cmd, sizeof cmd, "'%s' runs '%s' > '%s' 2>&1", GRPO_BIN, dir, out);
    CHECK(system(cmd) == 0, "%s", cmd);
    char *runs = slurp(out);
    char want[64];
    snprintf(want, sizeof want, " %ld ", cfg.steps);
    CHECK(runs && strstr(runs, "synthetic-demo") && strstr(runs, "synthetic (no model)") && strstr(runs, want),
          "grpo runs:\n%s", runs ? runs : "(none)");
    free(runs);
    /* a folder with a broken database: listed as unreadable, exit 1 */
    char bad[700];
    snprintf(bad, sizeof bad, "%s/broken-run", dir);
    mkdir(bad, 0755);
    snprintf(bad, sizeof bad, "%s/broken-run/rollouts.db", dir);
    FILE *bf = fopen(bad, "w");
    fputs("not a database, only text that is long enough for a header.........................\n", bf);
    fclose(bf);
    snprintf(cmd, sizeof cmd, "'%s' runs '%s' > '%s' 2>&1", GRPO_BIN, dir, out);
    CHECK(WEXITSTATUS(system(cmd)) == 1, "grpo runs with a broken database exits 1");
    runs = slurp(out);
    CHECK(runs && strstr(runs, "broken-run") && strstr(runs, "unreadable") && strstr(runs, "synthetic-demo"),
          "grpo runs lists the broken run and goes on:\n%s", runs ? runs : "(none)");
    free(runs);
    remove(bad);
    snprintf(cmd, sizeof cmd, "'%s' report '%s/nothing-here' > /dev/null 2>&1", GRPO_BIN, dir);
    CHECK(WEXITSTATUS(system(cmd)) == 2, "report on a missing run exits 2");
    /* every query of the SQL cookbook in docs/store.md runs on this database */
    if (system("sqlite3 -version > /dev/null 2>&1") == 0) {
        snprintf(cmd, sizeof cmd, "sh '%s/../docs/store-cookbook.sh' '%s' > '%s/cookbook.md' 2>&1",
                 GRPO_TESTS_DIR, db, dir);
        CHECK(system(cmd) == 0, "%s", cmd);
    }
    if (argc <= 1 && !test_failed_) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        (void)!system(cmd);
    }
    return test_report();
}
