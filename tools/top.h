/*
 * top.h - `shoal top`: the live view of the processes that hold shoal
 * objects and of the objects themselves (top.c).
 */
#ifndef SHOAL_TOOL_TOP_H
#define SHOAL_TOOL_TOP_H

#include <stdbool.h>

/* Run the view: refresh every @interval seconds until 'q' (or a signal);
 * @once: one frame, plain text, no terminal control; @json: one JSON
 * document per refresh, one line each. The exit status. */
int top_main(bool once, bool json, double interval);

#endif
