"""Layout of the packed plan the kernels run on.

A plan is two arrays: ``w`` (float, the model's dtype) holds every layer's
packed weights and parameters back to back; ``meta`` (int64) holds a header
and one fixed-size row per layer with its sizes, flags, activation codes and
the offsets of its arrays inside ``w``. Kernels take these two arrays instead
of one argument per tensor, which keeps the Python-to-numba call short.
"""

# header fields
H_NLAYERS = 0
H_INPUT = 1
H_OUTPUT = 2
H_STATE = 3
H_TILE = 4
H_SC_GX = 5     # scratch: input projections of a tile, TILE * max gate width
H_SC_GH = 6     # scratch: recurrent pre-activations, TILE rows (streams of a batch) * max gate width
H_SC_TMP = 7    # scratch: per-step temporaries, 2 * max hidden width
H_SC_SEQA = 8   # scratch: a tile of one layer's outputs, TILE * max width
H_SC_SEQB = 9   # scratch: the next layer's outputs, TILE * max width
H_SCRATCH = 10  # total scratch length
H_SKIP = 11     # model input skip: offset a of x added to the output, or -1 (skip.py)
H_GAIN = 12     # offset in w of the model's output gain, or -1 for none (skip.py)
H_GRAPH = 13    # offset in meta of a graph model's buffers and instructions, 0 for a chain (graph.py)
H_STRIDE = 14   # the model's total decimation (product of its layers' strides; rate.py)
H_RATE = 15     # scratch slot where a layer that changes the row count reports the rows it
                # wrote, or -1 when no layer does (every layer: one output row per input row)
H_FNS = 16      # address of the process's table of layer C functions for the dtype (calls.py)
HEADER = 17

# that table: the C function of kind code c (weight type included) and form
# f (FN_SEQ: T steps of one stream; FN_ROWS: one step of B streams) at 2c + f
FN_SEQ = 0
FN_ROWS = 1
FN_CODES = 1024
FN_APPLY = 1    # slot 1 (no kind has code 0): activations.apply, which every kernel calls

# per-layer row fields
M_KIND = 0
M_IN = 1
M_OUT = 2
M_HID = 3
M_STATE = 4   # offset of the layer's state inside the stream's state
M_FLAGS = 5
M_ACT0 = 6    # activation codes (meaning per layer kind)
M_ACT1 = 7
M_ACT2 = 8
M_P = 9       # offset in w of the float parameters (clip, alphas, betas)
M_W0 = 10     # offsets in w of up to six packed arrays
M_W1 = 11
M_W2 = 12
M_W3 = 13
M_W4 = 14
M_W5 = 15
ROW = 16
# a layer that changes the row count (a delayed or strided Conv1d, a pool: rate.py) keeps
M_DELAY = M_W3    # its warm-up (latency, in its input samples),
M_STRIDE = M_W4   # its stride,
M_COUNT = M_W5    # and the offset of its counter inside its state (-1: no counter)

# layer kinds
KIND_GRU = 1
KIND_LSTM = 2
KIND_RNN = 3
KIND_DENSE = 4
KIND_CONV = 5        # kernels/conv.py
KIND_BATCHNORM = 6   # kernels/norm.py (the three stateless per-sample kinds)
KIND_LAYERNORM = 7
KIND_PRELU = 8
KIND_MAXPOOL = 9     # kernels/pool.py
KIND_AVGPOOL = 10
KIND_ELEMENTWISE = 11  # kernels/elementwise.py: add, mul, slice, gate, blend (graphs)
# not a layer kind: a run of graph rows that one kernel runs at once (fuse.py)
KIND_RESIDUAL = 12     # kernels/residual.py: conv, mixer, add + activation, 1x1, residual, skip

# stored weight types (``q``): a layer whose weight matrices are stored in a
# reduced type has the kind code ``KIND_x | q << WQ_SHIFT`` (kinds.py
# compiles each pair only for models that have one; simd.py reads them)
WQ_FLOAT = 0     # the model's own float dtype
WQ_INT8 = 1      # int8 values, a float scale per output column
WQ_FLOAT16 = 2
WQ_BFLOAT16 = 3
WQ_TYPES = (WQ_FLOAT, WQ_INT8, WQ_FLOAT16, WQ_BFLOAT16)
WQ_CODES = {"int8": WQ_INT8, "float16": WQ_FLOAT16, "bfloat16": WQ_BFLOAT16}
WQ_SHIFT = 8
KIND_MASK = (1 << WQ_SHIFT) - 1

# float parameters block (at M_P): clip, then (alpha, beta) per activation slot
P_CLIP = 0
P_ALPHA0 = 1
P_BETA0 = 2
P_ALPHA1 = 3
P_BETA1 = 4
P_ALPHA2 = 5
P_BETA2 = 6
P_SIZE = 8

# flags
F_RESET_AFTER = 1
F_CLIP = 2
F_PROJ = 4
F_PEEPHOLE = 8
F_INPUT_FORGET = 16

# rows per tile in process(): bounds the scratch a stream owns
TILE = 16
# ... and in a graph model (kernels/graph.py), whose buffers hold a tile each
GRAPH_TILE = 64

# graph section (at meta[H_GRAPH], graph models only; kernels/graph.py):
# the scratch offset and row stride of the buffer the input is copied into
# and of the output node's buffer, then one instruction per layer row:
# where its operand(s) and its output live in the scratch (offset, row stride),
# the kind code of the C function that runs it and the rows it covers (a
# fused run of rows, fuse.py: that kind and span at its first row; its other
# rows keep their own, and the runner skips them), and a fused run's scratch
G_IN = 0
G_INS = 1
G_OUT = 2
G_OUTS = 3
G_HEAD = 4
I_A = 0    # first operand
I_AS = 1
I_B = 2    # second operand (binary element-wise ops)
I_BS = 3
I_D = 4    # output
I_DS = 5
I_FN = 6   # kind code of the C function (the row's own kind, or a fused one)
I_SPAN = 7  # rows it runs (1, or a fused run's length)
I_TMP = 8  # a fused run's scratch temporaries (offset)
I_FORM = 9  # which optional rows a fused run has (residual.py: R_* flags)
GI = 10    # ints per instruction
# a fused run serves at most this many rows of one stream per call; a
# longer tile runs row by row kernels (their tile products are faster there)
FUSED_ROWS = 4
