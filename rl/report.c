/* report: see report.h. The page is XHTML-clean (every element closed, every
 * attribute quoted, text escaped) so it can be checked with an XML parser;
 * plots are inline SVG written here, without scripts or external files. */
#include "report.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "base/xalloc.h"

/* ---- series ------------------------------------------------------------------ */

typedef struct Series {
    char name[128];    /* series name (metric or column) */
    char label[128];   /* legend label, "" = name */
    int dashed;        /* trainer-logged metric drawn over the same number from the rollouts */
    char source[160];  /* where the numbers come from: "VIEW.COLUMN[:NAME]" or "metrics:NAME" */
    int n, cap;
    double *x, *y;     /* [n] step, value */
    int used;          /* metrics: already drawn in a named plot */
} Series;

typedef struct SeriesSet {
    int n, cap;
    Series *s;
} SeriesSet;

static Series *set_add(SeriesSet *set, const char *name, const char *source) {
    if (set->n == set->cap) {
        set->cap = set->cap ? 2 * set->cap : 16;
        set->s = xrealloc(set->s, set->cap * sizeof *set->s);
    }
    Series *s = &set->s[set->n++];
    memset(s, 0, sizeof *s);
    snprintf(s->name, sizeof s->name, "%s", name);
    snprintf(s->source, sizeof s->source, "%s", source);
    return s;
}

static void series_push(Series *s, double x, double y) {
    if (!isfinite(x) || !isfinite(y)) return;  /* NULLs are gaps, not zeros */
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        s->x = xrealloc(s->x, s->cap * sizeof *s->x);
        s->y = xrealloc(s->y, s->cap * sizeof *s->y);
    }
    s->x[s->n] = x;
    s->y[s->n++] = y;
}

static void set_free(SeriesSet *set) {
    for (int i = 0; i < set->n; i++) {
        free(set->s[i].x);
        free(set->s[i].y);
    }
    free(set->s);
    memset(set, 0, sizeof *set);
}

static Series *set_find(SeriesSet *set, const char *name) {
    for (int i = 0; i < set->n; i++)
        if (!strcmp(set->s[i].name, name)) return &set->s[i];
    return NULL;
}

/* One series per column of a per-step view (column "step" is x). */
static void set_from_view(SeriesSet *set, const StoreTable *t, const char *view, const char *col) {
    int xc = store_table_col(t, "step"), yc = store_table_col(t, col);
    if (xc < 0 || yc < 0) return;
    char source[160];
    snprintf(source, sizeof source, "%s.%s", view, col);
    Series *s = set_add(set, col, source);
    for (int r = 0; r < t->nrows; r++) series_push(s, store_cell_num(t, r, xc), store_cell_num(t, r, yc));
}

/* One series per distinct value of keycol, from rows ordered by key then step. */
static void set_from_long(SeriesSet *set, const StoreTable *t, const char *keycol, const char *ycol,
                          const char *source_fmt) {
    int kc = store_table_col(t, keycol), xc = store_table_col(t, "step"), yc = store_table_col(t, ycol);
    if (kc < 0 || xc < 0 || yc < 0) return;
    Series *s = NULL;
    for (int r = 0; r < t->nrows; r++) {
        const char *key = store_cell_text(t, r, kc);
        if (!key) continue;
        if (!s || strcmp(s->name, key)) {
            char source[160];
            snprintf(source, sizeof source, source_fmt, key);
            s = set_add(set, key, source);
        }
        series_push(s, store_cell_num(t, r, xc), store_cell_num(t, r, yc));
    }
}

/* ---- HTML helpers ------------------------------------------------------------ */

/* Escapes text for element content and attributes; control characters that
 * XML forbids become U+FFFD. max >= 0 cuts after max bytes (at a character
 * boundary) and returns 1 if it did. */
static int put_text(FILE *f, const char *s, long max) {
    if (!s) return 0;
    long n = (long)strlen(s), cut = 0;
    if (max >= 0 && n > max) {
        n = max;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
        cut = 1;
    }
    for (long i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default:
            if ((c < 0x20 && c != '\n' && c != '\t' && c != '\r') || c == 0x7f) fputs("\xEF\xBF\xBD", f);
            else fputc(c, f);
        }
    }
    return (int)cut;
}

static void put_num(FILE *f, double v) {
    if (isnan(v)) fputs("&#8211;", f);
    else fprintf(f, "%.4g", v);
}

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd",
                                      "#8c564b", "#e377c2", "#17becf", "#7f7f7f", "#bcbd22"};
enum { NPALETTE = sizeof palette / sizeof palette[0] };

/* Plot geometry in pixels: the data area is [X0, X1] x [Y1, Y0]. */
enum { W = 440, H = 262, X0 = 62, X1 = W - 14, Y1 = 30, Y0 = H - 62 };

static double map(double v, double lo, double hi, double p0, double p1) {
    return hi > lo ? p0 + (v - lo) / (hi - lo) * (p1 - p0) : 0.5 * (p0 + p1);
}

/* One series of a plot: its numbers (data-x, data-y), its pixels (points) and
 * its legend entry; i is its index in the plot (colour, legend slot). */
static void svg_series(FILE *f, const Series *se, int i, int legend_cols, double xmin, double xmax,
                       double ymin, double ymax) {
    const char *color = palette[i % NPALETTE];
    fprintf(f, "<polyline class=\"series%s\" data-name=\"", se->dashed ? " logged" : "");
    put_text(f, se->name, -1);
    fprintf(f, "\" data-source=\"");
    put_text(f, se->source, -1);
    fprintf(f, "\" stroke=\"%s\" fill=\"none\" data-x=\"", color);
    for (int k = 0; k < se->n; k++) fprintf(f, "%s%.17g", k ? " " : "", se->x[k]);
    fprintf(f, "\" data-y=\"");
    for (int k = 0; k < se->n; k++) fprintf(f, "%s%.17g", k ? " " : "", se->y[k]);
    fprintf(f, "\" points=\"");
    for (int k = 0; k < se->n; k++)
        fprintf(f, "%s%.2f,%.2f", k ? " " : "", map(se->x[k], xmin, xmax, X0, X1),
                map(se->y[k], ymin, ymax, Y0, Y1));
    fprintf(f, "\"/>");
    if (se->n == 1)
        fprintf(f, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"3\" fill=\"%s\"/>",
                map(se->x[0], xmin, xmax, X0, X1), map(se->y[0], ymin, ymax, Y0, Y1), color);
    /* legend: below the axis, legend_cols per row */
    fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"legend\" fill=\"%s\">",
            X0 + (i % legend_cols) * ((X1 - X0) / legend_cols), Y0 + 30 + 12 * (i / legend_cols), color);
    put_text(f, se->label[0] ? se->label : se->name, 40);
    fprintf(f, "</text>");
}

/* A line plot of ns series sharing the step axis. */
static void svg_plot(FILE *f, const char *id, const char *title, Series *const *s, int ns) {
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    int npoints = 0;
    for (int i = 0; i < ns; i++)
        for (int k = 0; k < s[i]->n; k++) {
            xmin = fmin(xmin, s[i]->x[k]), xmax = fmax(xmax, s[i]->x[k]);
            ymin = fmin(ymin, s[i]->y[k]), ymax = fmax(ymax, s[i]->y[k]);
            npoints++;
        }
    size_t longest = 0;  /* legend columns: about 6 px per character */
    for (int i = 0; i < ns; i++) {
        size_t n = strlen(s[i]->label[0] ? s[i]->label : s[i]->name);
        longest = n > longest ? n : longest;
    }
    int cols = longest > 28 ? 1 : longest > 17 ? 2 : 3, rows = (ns + cols - 1) / cols;
    int h = H + (rows > 3 ? 12 * (rows - 3) : 0);  /* taller, not clipped, for a long legend */
    fprintf(f, "<figure class=\"plot\"><svg xmlns=\"http://www.w3.org/2000/svg\" id=\"%s\" width=\"%d\""
               " height=\"%d\" viewBox=\"0 0 %d %d\"", id, W, h, W, h);
    if (!npoints) {
        fprintf(f, "><text x=\"10\" y=\"20\" class=\"title\">");
        put_text(f, title, -1);
        fprintf(f, "</text><text x=\"%d\" y=\"%d\" class=\"empty\">no data in this run</text></svg>"
                   "</figure>\n", W / 2 - 60, H / 2);
        return;
    }
    if (ymax == ymin) {  /* a flat line still needs a y range */
        double pad = ymax == 0 ? 1 : fabs(ymax) * 0.1;
        ymin -= pad, ymax += pad;
    }
    fprintf(f, " data-xmin=\"%.17g\" data-xmax=\"%.17g\" data-ymin=\"%.17g\" data-ymax=\"%.17g\""
               " data-px0=\"%d\" data-px1=\"%d\" data-py0=\"%d\" data-py1=\"%d\">",
            xmin, xmax, ymin, ymax, X0, X1, Y0, Y1);
    fprintf(f, "<text x=\"10\" y=\"18\" class=\"title\">");
    put_text(f, title, -1);
    fprintf(f, "</text><rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" class=\"frame\"/>", X0, Y1,
            X1 - X0, Y0 - Y1);
    for (int t = 0; t <= 4; t++) {  /* grid and tick labels */
        double yv = ymin + (ymax - ymin) * t / 4, py = map(yv, ymin, ymax, Y0, Y1);
        if (fabs(yv) < 1e-3 * (ymax - ymin)) yv = 0;  /* a label, not "1.96e-07" */
        double xv = xmin + (xmax - xmin) * t / 4, px = map(xv, xmin, xmax, X0, X1);
        fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>"
                   "<text x=\"%d\" y=\"%.1f\" class=\"ytick\">%.3g</text>",
                X0, X1, py, py, X0 - 4, py + 4, yv);
        if (xmax > xmin || t == 2)
            fprintf(f, "<text x=\"%.1f\" y=\"%d\" class=\"xtick\">%.0f</text>", px, Y0 + 14, xv);
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"ytick\">step</text>", X0 - 6, Y0 + 14);
    for (int i = 0; i < ns; i++) svg_series(f, s[i], i, cols, xmin, xmax, ymin, ymax);
    fprintf(f, "</svg></figure>\n");
}

/* A plot from the metrics set, drawing (and marking used) the named metrics
 * that exist; prefix != NULL adds every metric starting with it. */
static void metric_plot(FILE *f, SeriesSet *m, const char *id, const char *title,
                        const char *const *names, const char *prefix, Series *extra) {
    Series *pick[32] = {0};
    int n = 0;
    for (int i = 0; names && names[i] && n < 31; i++) {
        Series *s = set_find(m, names[i]);
        if (s && !s->used) s->used = 1, pick[n++] = s;
    }
    for (int i = 0; prefix && i < m->n && n < 31; i++)
        if (!m->s[i].used && !strncmp(m->s[i].name, prefix, strlen(prefix)))
            m->s[i].used = 1, pick[n++] = &m->s[i];
    if (extra && extra->n) pick[n++] = extra;
    svg_plot(f, id, title, pick, n);
}

/* ---- page sections ------------------------------------------------------------- */

static const char *const css =
    "body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1500px}"
    "h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}"
    "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ddd;padding:3px 6px;"
    "vertical-align:top;text-align:left}th{background:#f4f4f4}td.num{text-align:right;"
    "font-variant-numeric:tabular-nums}"
    ".plots{display:flex;flex-wrap:wrap;gap:10px}figure.plot{margin:0;border:1px solid #eee}"
    "svg text{font-size:11px;fill:#333}svg text.title{font-size:13px;font-weight:bold}"
    "svg text.ytick{text-anchor:end}svg text.xtick{text-anchor:middle}"
    "svg text.xlabel{text-anchor:middle;fill:#777}svg .frame{fill:none;stroke:#999}"
    "svg .grid{stroke:#eee}svg polyline{stroke-width:1.6}svg polyline.logged{stroke-dasharray:5 4}svg text.legend{font-size:11px}"
    "svg text.empty{fill:#999}"
    "pre{white-space:pre-wrap;margin:0;font-size:12px;max-width:760px}"
    "p.note{color:#666;font-size:13px}";

static int section_run(Store *st, const ReportOpts *o, FILE *f, Err *err) {
    StoreTable *t = store_query(st,
        "SELECT r.name, r.model, r.started_at, r.grpo_version, r.recipe_path, r.recipe,"
        " (SELECT count(*) FROM steps) AS steps, (SELECT min(step) FROM steps) AS first_step,"
        " (SELECT max(step) FROM steps) AS last_step,"
        " (SELECT sum(num_rollouts) FROM steps) AS rollouts,"
        " (SELECT count(*) FROM run_starts) - 1 AS resumes,"
        " (SELECT max(written_at) FROM steps) AS last_write"
        " FROM (SELECT 1) LEFT JOIN run r", err);
    if (!t) return -1;
    static const char *const labels[] = {"run", "model", "started (UTC)", "grpo version",
                                         "recipe file", NULL, "steps", "first step", "last step",
                                         "rollouts", "resumes", "last step written (UTC)"};
    fprintf(f, "<h1>grpo report: ");
    put_text(f, o->title, -1);
    fprintf(f, "</h1>\n<table class=\"run\">");
    for (int c = 0; c < t->ncols && c < 12; c++) {
        if (!labels[c]) continue;
        fprintf(f, "<tr><th>%s</th><td id=\"run-%s\">", labels[c], t->names[c]);
        put_text(f, t->nrows ? store_cell_text(t, 0, c) : NULL, -1);
        fprintf(f, "</td></tr>");
    }
    fprintf(f, "</table>\n");
    if (t->nrows && store_cell_text(t, 0, 5)) {
        fprintf(f, "<details><summary>recipe</summary><pre>");
        put_text(f, store_cell_text(t, 0, 5), -1);
        fprintf(f, "</pre></details>\n");
    }
    store_table_free(t);
    return 0;
}

/* Colour of a router cell: load relative to uniform (1 = share 1/E), 0..2+. */
static void heat_color(double rel, char out[8]) {
    static const double stops[][3] = {{247, 251, 255}, {107, 174, 214}, {8, 48, 107}, {165, 15, 21}};
    double t = isfinite(rel) ? fmin(fmax(rel, 0), 3) : 0;
    int i = t >= 3 ? 2 : (int)t;
    double u = t - i;
    int rgb[3];
    for (int k = 0; k < 3; k++) rgb[k] = (int)lround(stops[i][k] + u * (stops[i + 1][k] - stops[i][k]));
    snprintf(out, 8, "#%02x%02x%02x", rgb[0], rgb[1], rgb[2]);
}

/* Load balance over the run: the busiest expert's load relative to uniform,
 * averaged over the MoE layers and for the worst layer. */
static int router_balance_plot(Store *st, FILE *f, Err *err) {
    StoreTable *t = store_query(st, "SELECT step, mean_max_over_mean, worst_max_over_mean"
                                    " FROM router_imbalance_per_step ORDER BY step", err);
    if (!t) return -1;
    SeriesSet set = {0};
    set_from_view(&set, t, "router_imbalance_per_step", "mean_max_over_mean");
    set_from_view(&set, t, "router_imbalance_per_step", "worst_max_over_mean");
    Series *p[2] = {&set.s[0], &set.s[1]};
    svg_plot(f, "plot-router-balance", "router: busiest expert / mean load", p, 2);
    set_free(&set);
    store_table_free(t);
    return 0;
}

static int section_router(Store *st, FILE *f, Err *err) {
    StoreTable *t = store_query(st,
        "SELECT step, layer, expert, tokens, share FROM router_share"
        " WHERE step = (SELECT max(step) FROM router_load) ORDER BY layer, expert", err);
    if (!t) return -1;
    fprintf(f, "<h2>MoE router load</h2>\n");
    if (!t->nrows) {
        fprintf(f, "<p class=\"note\">no router load recorded (a dense model, or none logged)</p>\n");
        store_table_free(t);
        return 0;
    }
    int minl = 1 << 30, maxl = -1, maxe = -1;
    for (int r = 0; r < t->nrows; r++) {
        int l = (int)store_cell_num(t, r, 1), e = (int)store_cell_num(t, r, 2);
        minl = l < minl ? l : minl, maxl = l > maxl ? l : maxl, maxe = e > maxe ? e : maxe;
    }
    int nl = maxl - minl + 1, ne = maxe + 1;
    int cw = ne > 128 ? 4 : ne > 64 ? 7 : ne > 32 ? 12 : 22, ch = nl > 40 ? 8 : nl > 16 ? 14 : 20;
    int left = 60, top = 30;
    int w = left + ne * cw + 20, h = top + nl * ch + 40;
    fprintf(f, "<p class=\"note\">step %.0f: share of each layer's routed tokens per expert; colour is"
               " load relative to uniform (white 0, blue 1 = 1/%d, dark 2, red 3 and more).</p>\n",
            store_cell_num(t, 0, 0), ne);
    fprintf(f, "<figure class=\"plot\"><svg xmlns=\"http://www.w3.org/2000/svg\" id=\"plot-router\""
               " width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" data-step=\"%.0f\">",
            w, h, w, h, store_cell_num(t, 0, 0));
    fprintf(f, "<text x=\"10\" y=\"18\" class=\"title\">router load (layer x expert)</text>");
    for (int r = 0; r < t->nrows; r++) {
        int l = (int)store_cell_num(t, r, 1), e = (int)store_cell_num(t, r, 2);
        double share = store_cell_num(t, r, 4);
        char color[8];
        heat_color(share * ne, color);
        fprintf(f, "<rect class=\"cell\" x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"%s\""
                   " data-layer=\"%d\" data-expert=\"%d\" data-tokens=\"%.17g\" data-share=\"%.17g\">"
                   "<title>layer %d expert %d: %.0f tokens (%.4g)</title></rect>",
                left + e * cw, top + (l - minl) * ch, cw, ch, color, l, e, store_cell_num(t, r, 3),
                share, l, e, store_cell_num(t, r, 3), share);
    }
    for (int l = minl; l <= maxl; l += (nl > 20 ? 5 : 1))
        fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"ytick\">layer %d</text>", left - 4,
                top + (l - minl) * ch + ch - 2, l);
    for (int e = 0; e < ne; e += (ne > 32 ? 16 : 4))
        fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"xtick\">%d</text>", left + e * cw + cw / 2,
                top + nl * ch + 14, e);
    fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"xlabel\">expert</text></svg></figure>\n",
            left + ne * cw / 2, top + nl * ch + 30);
    store_table_free(t);
    fprintf(f, "<div class=\"plots\">");
    int rc = router_balance_plot(st, f, err);
    fprintf(f, "</div>\n");
    return rc;
}

static int section_evals(Store *st, FILE *f, Err *err) {
    StoreTable *t = store_query(st, "SELECT dataset || ' ' || metric AS name, step, value, dataset,"
                                    " metric, num_samples FROM evals ORDER BY name, step, id", err);
    if (!t) return -1;
    fprintf(f, "<h2>Evaluations</h2>\n");
    if (!t->nrows) {
        fprintf(f, "<p class=\"note\">no evaluations recorded</p>\n");
        store_table_free(t);
        return 0;
    }
    SeriesSet set = {0};
    set_from_long(&set, t, "name", "value", "evals.value:%s");
    Series *pick[16];
    int n = 0;
    for (int i = 0; i < set.n && n < 16; i++) pick[n++] = &set.s[i];
    fprintf(f, "<div class=\"plots\">");
    svg_plot(f, "plot-evals", "evaluations", pick, n);
    fprintf(f, "</div>\n<table><tr><th>step</th><th>dataset</th><th>metric</th><th>value</th>"
               "<th>samples</th></tr>");
    for (int r = 0; r < t->nrows; r++) {
        fprintf(f, "<tr><td class=\"num\">%.0f</td><td>", store_cell_num(t, r, 1));
        put_text(f, store_cell_text(t, r, 3), -1);
        fprintf(f, "</td><td>");
        put_text(f, store_cell_text(t, r, 4), -1);
        fprintf(f, "</td><td class=\"num\">");
        put_num(f, store_cell_num(t, r, 2));
        fprintf(f, "</td><td class=\"num\">");
        put_num(f, store_cell_num(t, r, 5));
        fprintf(f, "</td></tr>");
    }
    fprintf(f, "</table>\n");
    set_free(&set);
    store_table_free(t);
    return 0;
}

/* The first, middle and last step, o->samples rows in all, in
 * (step, prompt, sample) order, with every reward component. */
static int section_samples(Store *st, const ReportOpts *o, FILE *f, Err *err) {
    char sql[1024];
    int per_step = o->samples / 3 > 0 ? o->samples / 3 : 1;
    snprintf(sql, sizeof sql,
             "WITH s AS (SELECT min(step) AS a, max(step) AS c FROM steps),"
             " picked AS (SELECT DISTINCT step FROM steps, s WHERE step IN (a, c,"
             "   (SELECT step FROM steps, s WHERE step >= (a + c) / 2 ORDER BY step LIMIT 1)))"
             " SELECT t.*, (SELECT group_concat(name || '=' || coalesce(printf('%%.4g', value), 'null')"
             "   || coalesce(' (error: ' || error || ')', ''), ', ') FROM rewards w"
             "   WHERE w.rollout_id = t.id) AS components"
             " FROM picked p JOIN rollout_texts t ON t.step = p.step"
             " AND t.id IN (SELECT id FROM rollouts r WHERE r.step = p.step"
             "   ORDER BY prompt_index, sample_index LIMIT %d)"
             " ORDER BY t.step, t.prompt_index, t.sample_index",
             per_step);
    StoreTable *t = store_query(st, sql, err);
    if (!t) return -1;
    fprintf(f, "<h2>Sampled completions</h2>\n<p class=\"note\">first, middle and last step, up to"
               " %d rollouts each; completions longer than %d bytes are cut (the full text is in the"
               " rollouts table).</p>\n", per_step, o->completion_chars);
    fprintf(f, "<table id=\"samples\"><tr><th>step</th><th>prompt</th><th>sample</th><th>reward</th>"
               "<th>advantage</th><th>reward components</th><th>tokens</th><th>finish</th>"
               "<th>completion</th></tr>\n");
    int c_id = store_table_col(t, "id"), c_step = store_table_col(t, "step");
    int c_pi = store_table_col(t, "prompt_index"), c_si = store_table_col(t, "sample_index");
    int c_rw = store_table_col(t, "reward"), c_adv = store_table_col(t, "advantage");
    int c_comp = store_table_col(t, "components"), c_tok = store_table_col(t, "completion_tokens");
    int c_fin = store_table_col(t, "finish_reason"), c_txt = store_table_col(t, "completion");
    int c_prompt = store_table_col(t, "prompt");
    for (int r = 0; r < t->nrows; r++) {
        fprintf(f, "<tr class=\"sample\" data-rollout-id=\"%.0f\" data-reward=\"%.17g\">"
                   "<td class=\"num\">%.0f</td><td class=\"num\">%.0f<details><summary>prompt"
                   "</summary><pre>", store_cell_num(t, r, c_id), store_cell_num(t, r, c_rw),
                store_cell_num(t, r, c_step), store_cell_num(t, r, c_pi));
        put_text(f, store_cell_text(t, r, c_prompt), o->completion_chars);
        fprintf(f, "</pre></details></td><td class=\"num\">%.0f</td><td class=\"num\">",
                store_cell_num(t, r, c_si));
        put_num(f, store_cell_num(t, r, c_rw));
        fprintf(f, "</td><td class=\"num\">");
        put_num(f, store_cell_num(t, r, c_adv));
        fprintf(f, "</td><td>");
        put_text(f, store_cell_text(t, r, c_comp), -1);
        fprintf(f, "</td><td class=\"num\">%.0f</td><td>", store_cell_num(t, r, c_tok));
        put_text(f, store_cell_text(t, r, c_fin), -1);
        fprintf(f, "</td><td><pre class=\"completion\">");
        if (put_text(f, store_cell_text(t, r, c_txt), o->completion_chars)) fputs(" [...]", f);
        fprintf(f, "</pre></td></tr>\n");
    }
    fprintf(f, "</table>\n");
    store_table_free(t);
    return 0;
}

/* The per-step plots: rollout-derived views, then metrics by family, then
 * every metric not drawn yet in a plot of its own. */
static int section_plots(Store *st, const ReportOpts *o, FILE *f, Err *err) {
    int rc = -1;
    StoreTable *steps = NULL, *comps = NULL, *metrics = NULL;
    SeriesSet v = {0}, c = {0}, m = {0}, acc = {0};
    steps = store_query(st,
        "SELECT r.step, r.reward_mean, r.reward_std, r.reward_min, r.reward_max, l.mean_length,"
        " l.min_length, l.max_length, l.truncated_frac, z.frac_reward_zero_std"
        " FROM reward_per_step r JOIN length_per_step l USING (step)"
        " JOIN zero_std_per_step z USING (step) ORDER BY step", err);
    if (!steps) goto done;
    comps = store_query(st, "SELECT step, name, mean, frac_positive FROM reward_components_per_step"
                            " ORDER BY name, step", err);
    if (!comps) goto done;
    metrics = store_query(st, "SELECT name, step, value FROM metrics ORDER BY name, step", err);
    if (!metrics) goto done;
    set_from_long(&c, comps, "name", "mean", "reward_components_per_step.mean:%s");
    set_from_long(&m, metrics, "name", "value", "metrics:%s");
    /* accuracy: the share of rollouts whose accuracy component is > 0 */
    int kc = store_table_col(comps, "name");
    Series *a = set_add(&acc, o->accuracy_reward, "");
    snprintf(a->source, sizeof a->source, "reward_components_per_step.frac_positive:%s",
             o->accuracy_reward);
    for (int r = 0; r < comps->nrows; r++)
        if (store_cell_text(comps, r, kc) && !strcmp(store_cell_text(comps, r, kc), o->accuracy_reward))
            series_push(a, store_cell_num(comps, r, 0), store_cell_num(comps, r, 3));
    static const char *const vcols[] = {"reward_mean", "reward_std", "mean_length", "min_length",
                                        "max_length", "truncated_frac", "frac_reward_zero_std"};
    for (size_t i = 0; i < sizeof vcols / sizeof vcols[0]; i++)
        set_from_view(&v, steps, i == 6 ? "zero_std_per_step" : i >= 2 ? "length_per_step"
                                                                        : "reward_per_step", vcols[i]);
    /* what the trainer logged, dashed over the same number from the rollouts
     * (not reward_std: TRL's is the mean of the group stds, a different number) */
    static const char *const logged[] = {"reward", "completions/mean_length", "frac_reward_zero_std"};
    static const char *const labels[] = {"reward (logged)", "mean_length (logged)",
                                         "frac (logged)"};
    Series *lg[3];
    for (int i = 0; i < 3; i++) {
        lg[i] = set_find(&m, logged[i]);
        if (lg[i]) {
            lg[i]->used = lg[i]->dashed = 1;
            snprintf(lg[i]->label, sizeof lg[i]->label, "%s", labels[i]);
        }
    }
    fprintf(f, "<h2>Per step</h2>\n<div class=\"plots\">\n");
    Series *p[32];
    int np = 0;
    p[np++] = &v.s[0], p[np++] = &v.s[1];
    if (lg[0]) p[np++] = lg[0];
    svg_plot(f, "plot-reward", "reward (total; std over all rollouts)", p, np);
    int nc = 0;
    for (int i = 0; i < c.n && nc < 32; i++) p[nc++] = &c.s[i];
    svg_plot(f, "plot-components", "reward components (mean)", p, nc);
    char title[160];
    snprintf(title, sizeof title, "accuracy (share with %s > 0)", o->accuracy_reward);
    p[0] = a;
    svg_plot(f, "plot-accuracy", title, p, 1);
    np = 0;
    p[np++] = &v.s[2], p[np++] = &v.s[3], p[np++] = &v.s[4];
    if (lg[1]) p[np++] = lg[1];
    svg_plot(f, "plot-length", "completion length (tokens)", p, np);
    metric_plot(f, &m, "plot-kl", "KL to the reference", (const char *[]){"kl", NULL}, NULL, NULL);
    metric_plot(f, &m, "plot-entropy", "entropy", (const char *[]){"entropy", NULL}, NULL, NULL);
    metric_plot(f, &m, "plot-clip", "clip fractions", NULL, "clip_ratio", &v.s[5]);
    metric_plot(f, &m, "plot-lr", "learning rate", (const char *[]){"learning_rate", NULL}, NULL, NULL);
    metric_plot(f, &m, "plot-timings", "timings per phase (s)", (const char *[]){"step_time", NULL},
                "timing_s/", NULL);
    np = 0;
    p[np++] = &v.s[6];
    if (lg[2]) p[np++] = lg[2];
    svg_plot(f, "plot-zero-std", "groups with zero reward variance (fraction)", p, np);
    for (int i = 0; i < m.n; i++) {
        if (m.s[i].used) continue;
        char id[200];
        snprintf(id, sizeof id, "plot-metric-");
        size_t k = strlen(id);
        for (const char *q = m.s[i].name; *q && k + 1 < sizeof id; q++)  /* ids: [a-z0-9_-] */
            id[k++] = (*q >= 'a' && *q <= 'z') || (*q >= '0' && *q <= '9') || *q == '_' ? *q : '-';
        id[k] = 0;
        p[0] = &m.s[i];
        svg_plot(f, id, m.s[i].name, p, 1);
    }
    fprintf(f, "</div>\n");
    rc = 0;
done:
    set_free(&v), set_free(&c), set_free(&m), set_free(&acc);
    store_table_free(steps), store_table_free(comps), store_table_free(metrics);
    return rc;
}

int report_write_html(Store *st, const ReportOpts *o, FILE *f, Err *err) {
    fprintf(f, "<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\"><head>"
               "<meta charset=\"utf-8\"/><title>grpo report: ");
    put_text(f, o->title, -1);
    fprintf(f, "</title><style>%s</style></head><body>\n", css);
    if (section_run(st, o, f, err) || section_plots(st, o, f, err) || section_router(st, f, err) ||
        section_evals(st, f, err) || section_samples(st, o, f, err))
        return -1;
    fprintf(f, "<p class=\"note\">Written by grpo report from the run's rollouts.db; every plot is"
               " a query on its views (docs/store.md).</p>\n</body></html>\n");
    if (ferror(f)) return err_set(err, ERR_WORK, "writing the report failed");
    return 0;
}

/* ---- terminal ------------------------------------------------------------------ */

int report_print_terminal(Store *st, const ReportOpts *o, FILE *out, Err *err) {
    if (strchr(o->accuracy_reward, '\''))
        return err_set(err, ERR_INPUT, "--accuracy: a reward name without quotes, please");
    char sql[2048];
    snprintf(sql, sizeof sql,
             "WITH s AS (SELECT r.step, r.reward_mean, r.reward_std, l.mean_length, l.min_length,"
             "   l.max_length, l.truncated_frac, z.frac_reward_zero_std AS zero_std,"
             "   (SELECT frac_positive FROM reward_components_per_step c WHERE c.step = r.step"
             "    AND c.name = '%s') AS accuracy,"
             "   m.kl, m.entropy, m.learning_rate, m.step_time,"
             "   row_number() OVER (ORDER BY r.step) - 1 AS i, count(*) OVER () AS n"
             " FROM reward_per_step r JOIN length_per_step l USING (step)"
             " JOIN zero_std_per_step z USING (step) LEFT JOIN step_metrics m USING (step))"
             " SELECT * FROM s WHERE n <= %d OR i = 0 OR i = n - 1"
             "   OR (i * (%d - 1)) / (n - 1) <> ((i - 1) * (%d - 1)) / (n - 1) ORDER BY step",
             o->accuracy_reward, o->rows, o->rows, o->rows);
    StoreTable *t = store_query(st, sql, err);
    if (!t) return -1;
    static const char *const cols[] = {"step", "reward_mean", "reward_std", "accuracy",
                                       "mean_length", "min_length", "max_length", "truncated_frac",
                                       "zero_std", "kl", "entropy", "learning_rate", "step_time"};
    static const char *const heads[] = {"step", "reward", "std", "acc", "len", "min", "max",
                                        "trunc", "0-std", "kl", "entropy", "lr", "time_s"};
    enum { NC = sizeof cols / sizeof cols[0] };
    fprintf(out, "%s: %d steps shown", o->title, t->nrows);
    fprintf(out, "\n");
    for (int k = 0; k < NC; k++) fprintf(out, k ? " %10s" : "%7s", heads[k]);
    fprintf(out, "\n");
    for (int r = 0; r < t->nrows; r++) {
        for (int k = 0; k < NC; k++) {
            double v = store_cell_num(t, r, store_table_col(t, cols[k]));
            if (!k) fprintf(out, "%7.0f", v);
            else if (isnan(v)) fprintf(out, " %10s", "-");
            else fprintf(out, " %10.4g", v);
        }
        fprintf(out, "\n");
    }
    store_table_free(t);
    t = store_query(st, "SELECT name, mean, frac_positive, nulls, errors FROM reward_components_per_step"
                        " WHERE step = (SELECT max(step) FROM steps) ORDER BY name", err);
    if (!t) return -1;
    if (t->nrows) {
        fprintf(out, "reward components at the last step:\n%-24s %10s %10s %8s %8s\n", "name", "mean",
                ">0", "nulls", "errors");
        for (int r = 0; r < t->nrows; r++)
            fprintf(out, "%-24s %10.4g %10.4g %8.0f %8.0f\n", store_cell_text(t, r, 0),
                    store_cell_num(t, r, 1), store_cell_num(t, r, 2), store_cell_num(t, r, 3),
                    store_cell_num(t, r, 4));
    }
    store_table_free(t);
    return 0;
}
