/*
 * A qemu-user TCG plugin that counts the guest instructions a process executes and writes the
 * total to the file named by its `out=` argument when the process exits.
 *
 * Why: qemu-user's wall time says nothing about a board's speed, but the number of instructions
 * an aarch64 inference executes is a property of the model, the runtime's kernels and the CPU
 * features qemu advertises (e.g. dot-product on cortex-a76): stable run to run, and turned into an
 * *estimated* latency with a per-CPU factor (see edgekws/estimate.py).
 *
 * The count is added inline when a translated block starts (one add per block, no callback per
 * instruction), so counting costs little emulation time. A block left early by an exception is
 * counted whole: a negligible over-count for straight-line inference kernels. The counter is not
 * atomic: count single-threaded runs (threads = 1).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <qemu-plugin.h>

QEMU_PLUGIN_EXPORT int qemu_plugin_version = QEMU_PLUGIN_VERSION;

static uint64_t executed;
static char out_path[4096];

static void on_translate(qemu_plugin_id_t id, struct qemu_plugin_tb *tb)
{
    qemu_plugin_register_vcpu_tb_exec_inline(tb, QEMU_PLUGIN_INLINE_ADD_U64, &executed,
                                             qemu_plugin_tb_n_insns(tb));
}

static void on_exit(qemu_plugin_id_t id, void *unused)
{
    FILE *f;

    if (!out_path[0]) {
        char line[64];
        snprintf(line, sizeof line, "instructions %" PRIu64 "\n", executed);
        qemu_plugin_outs(line);
        return;
    }
    f = fopen(out_path, "w");
    if (f) {
        fprintf(f, "%" PRIu64 "\n", executed);
        fclose(f);
    }
}

QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                           int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (strncmp(argv[i], "out=", 4) == 0 && strlen(argv[i] + 4) < sizeof out_path) {
            strcpy(out_path, argv[i] + 4);
        } else {
            fprintf(stderr, "insn_count: unknown argument '%s' (valid: out=PATH)\n", argv[i]);
            return -1;
        }
    }
    qemu_plugin_register_vcpu_tb_trans_cb(id, on_translate);
    qemu_plugin_register_atexit_cb(id, on_exit, NULL);
    return 0;
}
