/*
 * intkernel: an integer workload in the spirit of CoreMark.
 *
 * Every iteration runs four kernels whose inputs depend on the running CRC, so
 * no work can be hoisted out of the loop:
 *   - linked-list ops: search, reverse, merge sort through a comparison callback
 *   - 16-bit integer matrix multiply, matrix-vector product and bit extraction
 *   - a state machine classifying numeric tokens in a byte string
 *   - CRC16 over all of the above, plus 64-bit mul/div/rem mixing
 */
#define ITERS_SMALL 8
#define ITERS_BENCH 12000
#define EXPECTED_SMALL 0x43da7a059a4608a8ULL
#define EXPECTED_BENCH 0xb138b77675bb1988ULL

#include "bench.h"

/* ---- CRC16 (bit-serial, as in CoreMark) ---- */

static uint16_t crcu8(uint8_t data, uint16_t crc)
{
    for (int i = 0; i < 8; i++) {
        uint8_t x16 = (uint8_t)((data & 1) ^ (crc & 1));
        data >>= 1;
        if (x16) {
            crc ^= 0x4002;
            crc = (uint16_t)((crc >> 1) | 0x8000);
        } else {
            crc = (uint16_t)(crc >> 1);
        }
    }
    return crc;
}

static uint16_t crcu16(uint16_t v, uint16_t crc)
{
    crc = crcu8((uint8_t)v, crc);
    return crcu8((uint8_t)(v >> 8), crc);
}

static uint16_t crcu32(uint32_t v, uint16_t crc)
{
    crc = crcu16((uint16_t)v, crc);
    return crcu16((uint16_t)(v >> 16), crc);
}

/* ---- Linked list ---- */

#define LIST_N 96

struct item {
    int16_t value;
    int16_t idx;
};

struct node {
    struct node *next;
    struct item *info;
};

static struct node nodes[LIST_N];
static struct item items[LIST_N];

typedef int (*cmp_fn)(const struct item *a, const struct item *b);

static int cmp_value(const struct item *a, const struct item *b)
{
    return (int)a->value - (int)b->value;
}

static int cmp_idx(const struct item *a, const struct item *b)
{
    return (int)a->idx - (int)b->idx;
}

static struct node *list_init(uint16_t seed)
{
    for (int i = 0; i < LIST_N; i++) {
        uint16_t v = (uint16_t)((seed ^ (uint16_t)(i * 0x9e37)) * 0x2f1b + i);
        items[i].value = (int16_t)(v & 0x7fff);
        items[i].idx = (int16_t)i;
        nodes[i].info = &items[i];
        nodes[i].next = i + 1 < LIST_N ? &nodes[i + 1] : 0;
    }
    return &nodes[0];
}

static struct node *list_reverse(struct node *head)
{
    struct node *prev = 0;
    while (head) {
        struct node *next = head->next;
        head->next = prev;
        prev = head;
        head = next;
    }
    return prev;
}

static struct node *list_find(struct node *head, int16_t value, int16_t idx)
{
    for (; head; head = head->next) {
        if (idx >= 0 ? head->info->idx == idx : head->info->value == value)
            return head;
    }
    return 0;
}

/* Bottom-up merge sort of a singly linked list (stable), as in CoreMark. */
static struct node *list_sort(struct node *list, cmp_fn cmp)
{
    int insize = 1;
    for (;;) {
        struct node *p = list, *tail = 0;
        int nmerges = 0;
        list = 0;
        while (p) {
            struct node *q = p;
            int psize = 0, qsize = insize;
            nmerges++;
            for (int i = 0; i < insize && q; i++) {
                psize++;
                q = q->next;
            }
            while (psize > 0 || (qsize > 0 && q)) {
                struct node *e;
                if (psize == 0) {
                    e = q;
                    q = q->next;
                    qsize--;
                } else if (qsize == 0 || !q || cmp(p->info, q->info) <= 0) {
                    e = p;
                    p = p->next;
                    psize--;
                } else {
                    e = q;
                    q = q->next;
                    qsize--;
                }
                if (tail)
                    tail->next = e;
                else
                    list = e;
                tail = e;
            }
            p = q;
        }
        tail->next = 0;
        if (nmerges <= 1)
            return list;
        insize *= 2;
    }
}

static uint16_t list_bench(uint16_t seed)
{
    struct node *head = list_init(seed);
    uint16_t crc = seed;
    int found = 0, missed = 0;

    for (int i = 0; i < 8; i++) {
        struct node *n = list_find(head, (int16_t)((seed + i * 131) & 0x7fff), (int16_t)(i & 1 ? -1 : i * 7));
        if (n) {
            found++;
            crc = crcu16((uint16_t)n->info->value, crc);
        } else {
            missed++;
        }
        head = list_reverse(head);
    }
    head = list_sort(head, cmp_value);
    for (struct node *n = head; n; n = n->next)
        crc = crcu16((uint16_t)n->info->value, crc);
    /* Perturb a few values, then restore the original order by index. */
    for (struct node *n = head; n; n = n->next)
        if ((n->info->value & 3) == (seed & 3))
            n->info->value = (int16_t)(n->info->value ^ 0x155);
    head = list_sort(head, cmp_idx);
    for (struct node *n = head; n; n = n->next)
        crc = crcu16((uint16_t)(n->info->value + n->info->idx), crc);
    crc = crcu16((uint16_t)(found * 256 + missed), crc);
    return crc;
}

/* ---- Matrix ---- */

#define MAT_N 20

static int16_t mat_a[MAT_N][MAT_N];
static int16_t mat_b[MAT_N][MAT_N];
static int32_t mat_c[MAT_N][MAT_N];
static int32_t vec_r[MAT_N];

static uint16_t matrix_bench(uint16_t seed)
{
    uint32_t s = (uint32_t)seed | 1u;
    for (int i = 0; i < MAT_N; i++) {
        for (int j = 0; j < MAT_N; j++) {
            s = s * 1103515245u + 12345u;
            mat_a[i][j] = (int16_t)((s >> 16) & 0xff) - 128;
            s = s * 1103515245u + 12345u;
            mat_b[i][j] = (int16_t)((s >> 16) & 0x3ff) - 512;
        }
    }
    /* A += constant */
    int16_t k = (int16_t)((seed & 0x7) + 1);
    for (int i = 0; i < MAT_N; i++)
        for (int j = 0; j < MAT_N; j++)
            mat_a[i][j] = (int16_t)(mat_a[i][j] + k);
    /* C = A * B */
    for (int i = 0; i < MAT_N; i++) {
        for (int j = 0; j < MAT_N; j++) {
            int32_t acc = 0;
            for (int t = 0; t < MAT_N; t++)
                acc += (int32_t)mat_a[i][t] * (int32_t)mat_b[t][j];
            mat_c[i][j] = acc;
        }
    }
    /* r = A * column 0 of B */
    for (int i = 0; i < MAT_N; i++) {
        int32_t acc = 0;
        for (int t = 0; t < MAT_N; t++)
            acc += (int32_t)mat_a[i][t] * (int32_t)mat_b[t][0];
        vec_r[i] = acc;
    }
    /* Bit extraction and running sums, as CoreMark's matrix_sum. */
    uint16_t crc = seed;
    int32_t prev = 0, tmp = 0, ret = 0;
    for (int i = 0; i < MAT_N; i++) {
        for (int j = 0; j < MAT_N; j++) {
            int32_t field = (mat_c[i][j] >> ((i + j) & 7)) & 0x7f;
            tmp += field;
            if (tmp > 2000) {
                ret += 10;
                tmp = 0;
            } else {
                ret += field > prev ? 1 : 0;
            }
            prev = field;
            crc = crcu32((uint32_t)mat_c[i][j], crc);
        }
        crc = crcu32((uint32_t)vec_r[i], crc);
    }
    return crcu16((uint16_t)ret, crc);
}

/* ---- State machine ---- */

enum state { S_START, S_INVALID, S_S1, S_INT, S_FLOAT, S_EXP, S_S2, S_SCI, N_STATES };

#define STR_LEN 240

static uint8_t text[STR_LEN + 1];

static const char *const tokens[] = {
    "5012", "1234", "-874", "+122", "35.54400", ".1234500", "-110.700", "+0.64400",
    "5.500e+3", "-.123e-2", "-87e+832", "+0.6e-12", "T0.3e-1F", "-T.T++Tq", "1T3.4e4z", "34.0e-T^",
};

static enum state next_state(uint8_t **pstr, uint32_t *transitions)
{
    uint8_t *str = *pstr;
    enum state st = S_START;
    for (; *str && st != S_INVALID; str++) {
        uint8_t c = *str;
        if (c == ',') {
            str++;
            break;
        }
        switch (st) {
        case S_START:
            if (c >= '0' && c <= '9')
                st = S_INT;
            else if (c == '+' || c == '-')
                st = S_S1;
            else if (c == '.')
                st = S_FLOAT;
            else {
                st = S_INVALID;
                transitions[S_INVALID]++;
            }
            transitions[S_START]++;
            break;
        case S_S1:
            if (c >= '0' && c <= '9') {
                st = S_INT;
                transitions[S_S1]++;
            } else if (c == '.') {
                st = S_FLOAT;
                transitions[S_S1]++;
            } else {
                st = S_INVALID;
                transitions[S_S1]++;
            }
            break;
        case S_INT:
            if (c == '.') {
                st = S_FLOAT;
                transitions[S_INT]++;
            } else if (!(c >= '0' && c <= '9')) {
                st = S_INVALID;
                transitions[S_INT]++;
            }
            break;
        case S_FLOAT:
            if (c == 'e' || c == 'E') {
                st = S_S2;
                transitions[S_FLOAT]++;
            } else if (!(c >= '0' && c <= '9')) {
                st = S_INVALID;
                transitions[S_FLOAT]++;
            }
            break;
        case S_S2:
            if (c == '+' || c == '-') {
                st = S_EXP;
                transitions[S_S2]++;
            } else {
                st = S_INVALID;
                transitions[S_S2]++;
            }
            break;
        case S_EXP:
            if (c >= '0' && c <= '9') {
                st = S_SCI;
                transitions[S_EXP]++;
            } else {
                st = S_INVALID;
                transitions[S_EXP]++;
            }
            break;
        case S_SCI:
            if (!(c >= '0' && c <= '9')) {
                st = S_INVALID;
                transitions[S_INVALID]++;
            }
            break;
        default:
            break;
        }
    }
    *pstr = str;
    return st;
}

static uint16_t state_bench(uint16_t seed)
{
    /* Build a comma-separated token string chosen by the seed. */
    uint32_t s = seed;
    int n = 0;
    while (n + 9 < STR_LEN) {
        s = s * 1664525u + 1013904223u;
        const char *tok = tokens[(s >> 24) & 15];
        while (*tok)
            text[n++] = (uint8_t)*tok++;
        text[n++] = ',';
    }
    text[n] = 0;

    uint32_t final_counts[N_STATES] = {0};
    uint32_t transitions[N_STATES] = {0};
    uint16_t crc = seed;
    for (int pass = 0; pass < 2; pass++) {
        uint8_t *p = text;
        while (*p) {
            enum state st = next_state(&p, transitions);
            final_counts[st]++;
        }
        /* Corrupt every 7th byte (reversibly) and scan again. */
        for (int i = pass; i < n; i += 7)
            text[i] ^= (uint8_t)(pass ? 0 : ((seed >> 3) & 0x1f));
    }
    for (int i = 0; i < N_STATES; i++) {
        crc = crcu32(final_counts[i], crc);
        crc = crcu32(transitions[i], crc);
    }
    return crc;
}

/* ---- 64-bit arithmetic mixing: gcd, mod-pow, mulh ---- */

static uint64_t gcd64(uint64_t a, uint64_t b)
{
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

static uint64_t arith_bench(uint64_t x)
{
    const uint64_t mod = 1000000007ULL;
    uint64_t base = (x % mod) | 2, e = x ^ 0x5deece66dULL, r = 1;
    for (int i = 0; i < 24; i++) {
        if (e & 1)
            r = (r * base) % mod;
        base = (base * base) % mod;
        e >>= 1;
    }
    uint64_t hi = (uint64_t)(((unsigned __int128)x * 0x9e3779b97f4a7c15ULL) >> 64);
    int64_t sdiv = (int64_t)(x | 1) / -(int64_t)((x >> 40) | 3);
    return r ^ gcd64(x | 1, hi | 1) ^ hi ^ (uint64_t)sdiv;
}

int main(void)
{
    uint64_t sum = 0xcbf29ce484222325ULL;
    uint16_t crc = 0;
    for (uint32_t it = 0; it < ITERS; it++) {
        uint16_t seed = (uint16_t)(crc ^ it);
        crc = crcu16(list_bench(seed), crc);
        crc = crcu16(matrix_bench((uint16_t)(seed + crc)), crc);
        crc = crcu16(state_bench((uint16_t)(seed ^ crc)), crc);
        uint64_t a = arith_bench(sum ^ crc);
        sum = mix64(sum, ((uint64_t)crc << 48) ^ a);
    }
    return bench_check("intkernel", ITERS, sum, EXPECTED_SUM);
}
