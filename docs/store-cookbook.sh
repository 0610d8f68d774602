#!/bin/sh
# store-cookbook.sh DB: runs every query of the SQL cookbook in docs/store.md
# against a rollout store and prints each with its output as Markdown, which
# is how the outputs in docs/store.md were made (18-23: evaluated completions,
# empty on a run without evaluations). Needs the sqlite3 shell.
# Exit status: non-zero if any query fails.
set -eu
db=${1:?usage: docs/store-cookbook.sh runs/NAME/rollouts.db}
[ -f "$db" ] || { echo "store-cookbook.sh: $db: no such file" >&2; exit 2; }
n=0
q() {  # q TITLE SQL
  n=$((n + 1))
  printf '### %d. %s\n\n```sql\n%s\n```\n\n```\n' "$n" "$1" "$2"
  sqlite3 -bail -header -column -cmd '.timeout 5000' "$db" "$2"
  printf '```\n\n'
}

q "The run" \
"SELECT name, model, started_at, grpo_version FROM run;"

q "Reward per step (last 5 steps)" \
"SELECT step, rollouts, round(reward_mean, 3) AS reward, round(reward_std, 3) AS std,
       reward_min, reward_max
FROM reward_per_step ORDER BY step DESC LIMIT 5;"

q "Each reward function, first and last step" \
"SELECT step, name, round(mean, 3) AS mean, round(frac_positive, 3) AS positive, nulls, errors
FROM reward_components_per_step
WHERE step IN ((SELECT min(step) FROM steps), (SELECT max(step) FROM steps))
ORDER BY step, name;"

q "What the trainer logged, every 10th step" \
"SELECT step, round(reward, 3) AS reward, round(kl, 4) AS kl, round(entropy, 3) AS entropy,
       round(clip_ratio_region, 4) AS clip, learning_rate, round(step_time, 2) AS step_s
FROM step_metrics WHERE step % 10 = 0;"

q "Completion length growth, per 10 steps" \
"SELECT step / 10 * 10 AS from_step, round(avg(mean_length), 1) AS mean_len,
       min(min_length) AS min_len, max(max_length) AS max_len,
       round(avg(truncated_frac), 3) AS truncated
FROM length_per_step GROUP BY step / 10;"

q "Groups with zero reward variance (no learning signal), last 5 steps" \
"SELECT step, groups_total, zero_std_groups, round(frac_reward_zero_std, 3) AS frac
FROM zero_std_per_step ORDER BY step DESC LIMIT 5;"

q "The best completion for the prompts of the last step" \
"SELECT step, prompt_index, sample_index, reward, substr(replace(completion, char(10), ' '), 1, 46) AS completion
FROM best_completions WHERE step = (SELECT max(step) FROM steps) ORDER BY prompt_index LIMIT 4;"

q "The worst completions of the whole run" \
"SELECT step, prompt_index, reward, finish_reason, completion_tokens AS tokens,
       substr(replace(completion, char(10), ' '), 1, 50) AS completion
FROM worst_completions ORDER BY reward, step LIMIT 5;"

q "Reward scripts that failed, and how often" \
"SELECT name, error, count(*) AS rollouts FROM rewards
WHERE error IS NOT NULL GROUP BY name, error ORDER BY rollouts DESC;"

q "Truncated vs finished completions" \
"SELECT finish_reason, count(*) AS rollouts, round(avg(reward), 3) AS reward,
       round(avg(completion_tokens), 1) AS tokens
FROM rollouts GROUP BY finish_reason;"

q "Advantages are centred per group (largest |group mean|)" \
"SELECT max(abs(a)) AS worst_group_mean_advantage
FROM (SELECT avg(advantage) AS a FROM rollouts GROUP BY step, prompt_index);"

q "Mean sampling log-prob per token, per 20 steps" \
"SELECT step / 20 * 20 AS from_step, round(avg(logprob_sum / completion_tokens), 4) AS logprob_per_token
FROM rollouts WHERE completion_tokens > 0 GROUP BY step / 20;"

q "Where the time goes (mean seconds per phase)" \
"SELECT name, round(avg(value), 3) AS mean_s, round(max(value), 3) AS max_s
FROM metrics WHERE name LIKE 'timing_s/%' OR name = 'step_time' GROUP BY name ORDER BY mean_s DESC;"

q "Busiest experts at the last step" \
"SELECT layer, expert, tokens, round(share, 4) AS share
FROM router_share WHERE step = (SELECT max(step) FROM router_load)
ORDER BY share DESC LIMIT 5;"

q "Router imbalance of layer 1 over time (max load / mean load)" \
"SELECT step, experts, round(max_over_mean, 2) AS max_over_mean,
       round(min_over_mean, 2) AS min_over_mean, idle_experts
FROM router_imbalance WHERE layer = 1 AND step % 15 = 0;"

q "Evaluations" \
"SELECT step, dataset, metric, round(value, 4) AS value, num_samples FROM evals ORDER BY step;"

q "Every sample of one prompt, from a data-set row" \
"SELECT r.step, r.sample_index, r.reward, round(r.advantage, 3) AS advantage, r.completion_tokens AS tokens
FROM prompts p JOIN rollouts r USING (step, prompt_index)
WHERE p.dataset_index = (SELECT dataset_index FROM prompts ORDER BY step DESC, prompt_index LIMIT 1)
ORDER BY r.step, r.sample_index;"
q "Each evaluation, from its samples (pass@1, pass@k with n = k)" \
"SELECT step, rows, samples, round(pass_at_1, 3) AS pass_at_1, round(pass_at_k, 3) AS pass_at_k,
       round(mean_length, 1) AS mean_length
FROM eval_per_step ORDER BY dataset, step;"

q "How each problem's pass rate moved across the evaluations (first 6 problems)" \
"SELECT dataset_index, group_concat(printf('%.2f', pass_rate), '  ') AS pass_rate_by_step
FROM (SELECT * FROM eval_rows ORDER BY step) GROUP BY dataset, dataset_index
ORDER BY dataset_index LIMIT 6;"

q "Problems solved after training that were not solved before" \
"SELECT dataset_index, first_step, first_pass_rate, last_step, last_pass_rate,
       substr(replace(prompt, char(10), ' '), 1, 60) AS prompt
FROM eval_newly_solved ORDER BY last_pass_rate DESC, dataset_index LIMIT 5;"

q "Gained and lost between the first and the last evaluation" \
"SELECT sum(first_pass_rate = 0 AND last_pass_rate > 0) AS newly_solved,
       sum(first_pass_rate > 0 AND last_pass_rate = 0) AS no_longer_solved,
       sum(change > 0) AS improved, sum(change < 0) AS worse, count(*) AS problems
FROM eval_row_changes;"

q "The evaluated completions of one newly solved problem, first and last evaluation" \
"SELECT step, sample_index, correct, pred, finish_reason, completion_tokens AS tokens,
       substr(replace(completion, char(10), ' '), 1, 52) AS completion
FROM eval_samples
WHERE dataset_index = (SELECT dataset_index FROM eval_newly_solved ORDER BY last_pass_rate DESC, dataset_index LIMIT 1)
  AND step IN ((SELECT min(step) FROM eval_samples), (SELECT max(step) FROM eval_samples))
ORDER BY step, sample_index;"

q "Every reward component of the evaluated completions, per evaluation" \
"SELECT s.step, r.name, round(avg(r.value), 3) AS mean, sum(r.value IS NULL) AS nulls,
       sum(r.error IS NOT NULL) AS errors
FROM eval_rewards r JOIN eval_samples s ON s.id = r.sample_id
GROUP BY s.step, r.name ORDER BY s.step, r.name;"
