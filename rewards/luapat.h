/* luapat: Lua 5.4 string patterns (string.find, string.match, string.gmatch,
 * string.gsub) with a step limit, for the reward sandbox.
 *
 * Lua's own matcher backtracks without bound inside one C call, where the
 * instruction-count hook never fires: "<think>(.-)</think>%s*<answer>(.-)</answer>"
 * over a long completion that does not match costs O(n^2..n^3). This module
 * implements the same pattern language (reference manual §6.4.1) and the same
 * four functions, with identical results and error messages for every pattern
 * that finishes, and charges each unit of matching work (one step: entering
 * a pattern item, testing one character in a repetition or a %b scan, 16
 * bytes of a back-reference) to a budget. Past the budget the call raises
 * "pattern matching step limit exceeded".
 *
 * It is not a new pattern dialect: no extensions, no different defaults.
 * string.find with plain=true (or a pattern without special characters) is a
 * linear search and costs no steps. Work done by a gsub replacement function
 * or a __index metamethod of a replacement table is Lua code, counted by the
 * caller's instruction hook, not here. */
#ifndef GRPO_LUAPAT_H
#define GRPO_LUAPAT_H

#include <lua.h>

/* Where steps come from. Each call may take at most call_cap steps, and at
 * most left() when left is set; every step taken is reported to charge()
 * (in batches, and always before the call raises an error or runs Lua code),
 * so steps spent by a call that fails are never lost to the budget. */
typedef struct LuapatBudget {
    long call_cap;                                  /* steps per call (> 0) */
    long (*left)(lua_State *L, void *ud);           /* steps left in the caller's budget; NULL: unlimited */
    void (*charge)(lua_State *L, void *ud, long n); /* n steps were used; NULL: not reported */
    void *ud;
} LuapatBudget;

/* Steps per call when no budget is given (about 0.1 s of matching). */
enum { LUAPAT_CALL_CAP = 10000000 };

/* Sets find, match, gmatch and gsub of the table at idx to the step-limited
 * versions. b is copied (NULL: LUAPAT_CALL_CAP per call, nothing charged).
 * Raises a Lua error on memory failure (call it from a protected context). */
void luapat_install(lua_State *L, int idx, const LuapatBudget *b);

#endif
