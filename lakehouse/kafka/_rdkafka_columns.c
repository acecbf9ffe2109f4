/* Read assigned Kafka offset ranges straight into Arrow column buffers.
 *
 * confluent-kafka hands every message to Python as a Message object with its own bytes
 * objects: at a million messages that is most of the cost of ingestion, and it holds the
 * GIL throughout. This module drives the same librdkafka (the copy confluent-kafka ships,
 * loaded at run time with dlopen) from C: messages are copied into growing column buffers
 * with the GIL released, and a batch comes back as a handful of buffers that pyarrow wraps
 * without copying. Kafka itself (fetching, protocol, security, transactions) stays
 * librdkafka's; what is here is the cursor over the planned ranges and the copying.
 *
 * The cursor mirrors lakehouse/kafka/reader.py: a position and an end per partition; a
 * partition is paused once it reaches its end; partition-EOF events and the consumer's
 * position move past offsets that hold no message (transaction markers, compaction).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

/* ---- librdkafka's public, stable C ABI (rdkafka.h), only what this module calls ---- */

typedef struct rd_kafka_s rd_kafka_t;
typedef struct rd_kafka_conf_s rd_kafka_conf_t;
typedef struct rd_kafka_queue_s rd_kafka_queue_t;
typedef struct rd_kafka_topic_s rd_kafka_topic_t;

typedef struct {
    char *topic;
    int32_t partition;
    int64_t offset;
    void *metadata;
    size_t metadata_size;
    void *opaque;
    int err;
    void *_private;
} rdk_topic_partition_t;

typedef struct {
    int cnt;
    int size;
    rdk_topic_partition_t *elems;
} rdk_partition_list_t;

typedef struct {
    int err;
    rd_kafka_topic_t *rkt;
    int32_t partition;
    void *payload;
    size_t len;
    void *key;
    size_t key_len;
    int64_t offset;
    void *_private;
} rdk_message_t;

enum {
    RDK_CONSUMER = 1,
    RDK_CONF_OK = 0,
    RDK_ERR_NO_ERROR = 0,
    RDK_ERR_PARTITION_EOF = -191,
};

static struct {
    void *library;
    const char *(*version_str)(void);
    rd_kafka_conf_t *(*conf_new)(void);
    int (*conf_set)(rd_kafka_conf_t *, const char *, const char *, char *, size_t);
    void (*conf_destroy)(rd_kafka_conf_t *);
    rd_kafka_t *(*new_)(int, rd_kafka_conf_t *, char *, size_t);
    int (*poll_set_consumer)(rd_kafka_t *);
    rd_kafka_queue_t *(*queue_get_consumer)(rd_kafka_t *);
    void (*queue_destroy)(rd_kafka_queue_t *);
    rdk_partition_list_t *(*list_new)(int);
    rdk_topic_partition_t *(*list_add)(rdk_partition_list_t *, const char *, int32_t);
    void (*list_destroy)(rdk_partition_list_t *);
    int (*assign)(rd_kafka_t *, const rdk_partition_list_t *);
    int (*pause_partitions)(rd_kafka_t *, rdk_partition_list_t *);
    int (*resume_partitions)(rd_kafka_t *, rdk_partition_list_t *);
    int (*position)(rd_kafka_t *, rdk_partition_list_t *);
    ssize_t (*consume_batch_queue)(rd_kafka_queue_t *, int, rdk_message_t **, size_t);
    int64_t (*message_timestamp)(const rdk_message_t *, int *);
    void (*message_destroy)(rdk_message_t *);
    const char *(*err2str)(int);
    rd_kafka_topic_t *(*topic_new)(rd_kafka_t *, const char *, void *);
    void (*topic_destroy)(rd_kafka_topic_t *);
    int (*metadata)(rd_kafka_t *, int, rd_kafka_topic_t *, const void **, int);
    void (*metadata_destroy)(const void *);
    int (*consumer_close)(rd_kafka_t *);
    void (*destroy)(rd_kafka_t *);
} rdk;

#define RDK_SYMBOL(field, name)                                                              \
    do {                                                                                     \
        *(void **)(&rdk.field) = dlsym(library, name);                                       \
        if (rdk.field == NULL) {                                                             \
            PyErr_Format(PyExc_ImportError, "%s has no symbol %s", path, name);              \
            return NULL;                                                                     \
        }                                                                                    \
    } while (0)

/* load(path) -> librdkafka version string. Binds this module to the library at `path`. */
static PyObject *load(PyObject *self, PyObject *args) {
    const char *path;
    if (!PyArg_ParseTuple(args, "s", &path))
        return NULL;
    if (rdk.library != NULL)
        return PyUnicode_FromString(rdk.version_str());
    /* Already loaded by confluent-kafka, usually: the same copy, one librdkafka per process. */
    void *library = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (library == NULL) {
        PyErr_Format(PyExc_ImportError, "cannot load librdkafka: %s", dlerror());
        return NULL;
    }
    RDK_SYMBOL(version_str, "rd_kafka_version_str");
    RDK_SYMBOL(conf_new, "rd_kafka_conf_new");
    RDK_SYMBOL(conf_set, "rd_kafka_conf_set");
    RDK_SYMBOL(conf_destroy, "rd_kafka_conf_destroy");
    RDK_SYMBOL(new_, "rd_kafka_new");
    RDK_SYMBOL(poll_set_consumer, "rd_kafka_poll_set_consumer");
    RDK_SYMBOL(queue_get_consumer, "rd_kafka_queue_get_consumer");
    RDK_SYMBOL(queue_destroy, "rd_kafka_queue_destroy");
    RDK_SYMBOL(list_new, "rd_kafka_topic_partition_list_new");
    RDK_SYMBOL(list_add, "rd_kafka_topic_partition_list_add");
    RDK_SYMBOL(list_destroy, "rd_kafka_topic_partition_list_destroy");
    RDK_SYMBOL(assign, "rd_kafka_assign");
    RDK_SYMBOL(pause_partitions, "rd_kafka_pause_partitions");
    RDK_SYMBOL(resume_partitions, "rd_kafka_resume_partitions");
    RDK_SYMBOL(position, "rd_kafka_position");
    RDK_SYMBOL(consume_batch_queue, "rd_kafka_consume_batch_queue");
    RDK_SYMBOL(message_timestamp, "rd_kafka_message_timestamp");
    RDK_SYMBOL(message_destroy, "rd_kafka_message_destroy");
    RDK_SYMBOL(err2str, "rd_kafka_err2str");
    RDK_SYMBOL(topic_new, "rd_kafka_topic_new");
    RDK_SYMBOL(topic_destroy, "rd_kafka_topic_destroy");
    RDK_SYMBOL(metadata, "rd_kafka_metadata");
    RDK_SYMBOL(metadata_destroy, "rd_kafka_metadata_destroy");
    RDK_SYMBOL(consumer_close, "rd_kafka_consumer_close");
    RDK_SYMBOL(destroy, "rd_kafka_destroy");
    rdk.library = library;
    return PyUnicode_FromString(rdk.version_str());
}

/* ---- Block: malloc'd memory handed to Python through the buffer protocol ---- */

typedef struct {
    PyObject_HEAD
    char *data;
    Py_ssize_t size;
} Block;

static void block_dealloc(Block *self) {
    free(self->data);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int block_getbuffer(Block *self, Py_buffer *view, int flags) {
    return PyBuffer_FillInfo(view, (PyObject *)self, self->data, self->size, 1, flags);
}

static PyBufferProcs block_as_buffer = {(getbufferproc)block_getbuffer, NULL};

static PyTypeObject BlockType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "lakehouse.kafka._rdkafka_columns.Block",
    .tp_basicsize = sizeof(Block),
    .tp_dealloc = (destructor)block_dealloc,
    .tp_as_buffer = &block_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Read-only memory of one column buffer.",
};

/* ---- growable buffers, filled with the GIL released ---- */

typedef struct {
    char *data;
    size_t size;
    size_t capacity;
} Growable;

static int grow(Growable *g, size_t more) {
    if (g->size + more <= g->capacity)
        return 0;
    size_t capacity = g->capacity ? g->capacity : 4096;
    while (capacity < g->size + more)
        capacity *= 2;
    char *data = realloc(g->data, capacity);
    if (data == NULL)
        return -1;
    g->data = data;
    g->capacity = capacity;
    return 0;
}

static inline int append(Growable *g, const void *bytes, size_t n) {
    if (grow(g, n) < 0)
        return -1;
    if (n)
        memcpy(g->data + g->size, bytes, n);
    g->size += n;
    return 0;
}

/* A Block owning `g`'s memory (the Growable is emptied). Needs the GIL. */
static PyObject *block_from(Growable *g) {
    Block *block = PyObject_New(Block, &BlockType);
    if (block == NULL)
        return NULL;
    block->data = g->data ? g->data : malloc(1);
    block->size = (Py_ssize_t)g->size;
    g->data = NULL;
    g->size = g->capacity = 0;
    return (PyObject *)block;
}

/* A large_binary column: int64 offsets, the bytes, and a validity bitmap built lazily. */
typedef struct {
    Growable offsets;
    Growable data;
    Growable validity;
    int64_t nulls;
} BinaryColumn;

static int binary_append(BinaryColumn *c, int64_t row, const void *bytes, size_t n) {
    if (bytes == NULL) {
        if (c->nulls == 0) {
            /* The first null: every earlier row was valid. */
            size_t need = (size_t)(row / 8 + 1);
            if (grow(&c->validity, need) < 0)
                return -1;
            memset(c->validity.data, 0xFF, need);
            c->validity.size = need;
        }
        c->nulls++;
    }
    if (c->nulls) {
        size_t need = (size_t)(row / 8 + 1);
        if (c->validity.size < need) {
            if (grow(&c->validity, need - c->validity.size) < 0)
                return -1;
            memset(c->validity.data + c->validity.size, 0, need - c->validity.size);
            c->validity.size = need;
        }
        if (bytes != NULL)
            c->validity.data[row / 8] |= (char)(1u << (row % 8));
        else
            c->validity.data[row / 8] &= (char)~(1u << (row % 8));
    }
    if (bytes != NULL && append(&c->data, bytes, n) < 0)
        return -1;
    int64_t end = (int64_t)c->data.size;
    return append(&c->offsets, &end, sizeof end);
}

static void binary_free(BinaryColumn *c) {
    free(c->offsets.data);
    free(c->data.data);
    free(c->validity.data);
    memset(c, 0, sizeof *c);
}

/* ---- Consumer ---- */

typedef struct {
    PyObject_HEAD
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    char *topic;
    int32_t partitions; /* position/end/assigned/open are indexed by partition id */
    int64_t *position;
    int64_t *end;
    char *assigned;
    char *open;
    rdk_message_t **held; /* consumed, not yet handled: held[held_next..held_count) */
    size_t held_next, held_count, held_capacity;
    volatile int stopped;
    int busy;
} Consumer;

/* Forget the assignment's ranges (a new assignment, or closing). */
static void free_ranges(Consumer *self) {
    free(self->topic);
    free(self->position);
    free(self->end);
    free(self->assigned);
    free(self->open);
    self->topic = NULL;
    self->position = self->end = NULL;
    self->assigned = self->open = NULL;
    self->partitions = 0;
}

/* Drop the messages held back for the next read (a new assignment, or closing). */
static void drop_held(Consumer *self) {
    for (size_t i = self->held_next; i < self->held_count; i++)
        rdk.message_destroy(self->held[i]);
    self->held_next = self->held_count = 0;
}

static void consumer_release(Consumer *self) {
    drop_held(self);
    free(self->held);
    self->held = NULL;
    self->held_capacity = 0;
    if (self->queue != NULL) {
        rdk.queue_destroy(self->queue);
        self->queue = NULL;
    }
    if (self->rk != NULL) {
        rd_kafka_t *rk = self->rk;
        self->rk = NULL;
        Py_BEGIN_ALLOW_THREADS
        rdk.consumer_close(rk);
        rdk.destroy(rk);
        Py_END_ALLOW_THREADS
    }
    free_ranges(self);
}

static void consumer_dealloc(Consumer *self) {
    consumer_release(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* Consumer(config: list[tuple[str, str]]) */
static int consumer_init(Consumer *self, PyObject *args, PyObject *kwds) {
    PyObject *items;
    char errstr[512];
    if (!PyArg_ParseTuple(args, "O", &items))
        return -1;
    if (rdk.library == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "librdkafka is not loaded: call load(path) first");
        return -1;
    }
    if (self->rk != NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the consumer is already initialised");
        return -1;
    }
    PyObject *seq = PySequence_Fast(items, "config must be a sequence of (name, value) pairs");
    if (seq == NULL)
        return -1;
    rd_kafka_conf_t *conf = rdk.conf_new();
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    for (Py_ssize_t i = 0; i < n; i++) {
        const char *name, *value;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "ss", &name, &value)) {
            rdk.conf_destroy(conf);
            Py_DECREF(seq);
            return -1;
        }
        if (rdk.conf_set(conf, name, value, errstr, sizeof errstr) != RDK_CONF_OK) {
            PyErr_Format(PyExc_ValueError, "Kafka config %s: %s", name, errstr);
            rdk.conf_destroy(conf);
            Py_DECREF(seq);
            return -1;
        }
    }
    Py_DECREF(seq);
    rd_kafka_t *rk = rdk.new_(RDK_CONSUMER, conf, errstr, sizeof errstr);
    if (rk == NULL) { /* rd_kafka_new frees conf only on success */
        rdk.conf_destroy(conf);
        PyErr_Format(PyExc_ValueError, "cannot create a Kafka consumer: %s", errstr);
        return -1;
    }
    rdk.poll_set_consumer(rk);
    self->rk = rk;
    self->queue = rdk.queue_get_consumer(rk);
    return 0;
}

static int check_usable(Consumer *self) {
    if (self->rk == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "the consumer is closed");
        return -1;
    }
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "the consumer is in use by another thread");
        return -1;
    }
    return 0;
}

static int in_range(Consumer *self, int32_t p) { return p >= 0 && p < self->partitions; }

/* assign(topic, ranges: list[tuple[partition, start, end]]): read [start, end) of each. */
static PyObject *consumer_assign(Consumer *self, PyObject *args) {
    const char *topic;
    PyObject *ranges;
    if (!PyArg_ParseTuple(args, "sO", &topic, &ranges) || check_usable(self) < 0)
        return NULL;
    PyObject *seq = PySequence_Fast(ranges, "ranges must be a sequence");
    if (seq == NULL)
        return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    int32_t partitions = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        int partition;
        long long start, end;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "iLL", &partition, &start, &end)) {
            Py_DECREF(seq);
            return NULL;
        }
        if (partition < 0 || start < 0 || end < start) {
            PyErr_Format(PyExc_ValueError, "bad range %d: %lld..%lld", partition, start, end);
            Py_DECREF(seq);
            return NULL;
        }
        if (partition + 1 > partitions)
            partitions = partition + 1;
    }
    drop_held(self);
    self->stopped = 0;
    free_ranges(self);
    self->topic = strdup(topic);
    self->position = calloc((size_t)partitions + 1, sizeof(int64_t));
    self->end = calloc((size_t)partitions + 1, sizeof(int64_t));
    self->assigned = calloc((size_t)partitions + 1, 1);
    self->open = calloc((size_t)partitions + 1, 1);
    if (!self->topic || !self->position || !self->end || !self->assigned || !self->open) {
        free_ranges(self);
        Py_DECREF(seq);
        return PyErr_NoMemory();
    }
    self->partitions = partitions;
    rdk_partition_list_t *list = rdk.list_new((int)n);
    for (Py_ssize_t i = 0; i < n; i++) {
        int partition;
        long long start, end;
        PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "iLL", &partition, &start, &end);
        self->position[partition] = start;
        self->end[partition] = end;
        self->assigned[partition] = 1;
        if (start < end) {
            self->open[partition] = 1;
            rdk.list_add(list, topic, partition)->offset = start;
        }
    }
    Py_DECREF(seq);
    int err;
    Py_BEGIN_ALLOW_THREADS
    err = rdk.assign(self->rk, list);
    /* A partition paused at the end of an earlier assignment stays paused: resume it. */
    if (err == RDK_ERR_NO_ERROR)
        rdk.resume_partitions(self->rk, list);
    Py_END_ALLOW_THREADS
    rdk.list_destroy(list);
    if (err != RDK_ERR_NO_ERROR)
        return PyErr_Format(PyExc_RuntimeError, "assign %s: %s", topic, rdk.err2str(err));
    Py_RETURN_NONE;
}

/* prepare(topic, timeout_s): connect and learn the topic's partition leaders now (an
 * assignment of a topic the client has no metadata for waits for librdkafka's next periodic
 * refresh: up to a second). Returns whether the metadata arrived in time. */
static PyObject *consumer_prepare(Consumer *self, PyObject *args) {
    const char *topic;
    double timeout;
    if (!PyArg_ParseTuple(args, "sd", &topic, &timeout) || check_usable(self) < 0)
        return NULL;
    int err = -1;
    self->busy = 1;
    Py_BEGIN_ALLOW_THREADS
    rd_kafka_topic_t *rkt = rdk.topic_new(self->rk, topic, NULL);
    if (rkt != NULL) {
        const void *metadata = NULL;
        err = rdk.metadata(self->rk, 0, rkt, &metadata, (int)(timeout * 1000));
        if (metadata != NULL)
            rdk.metadata_destroy(metadata);
        rdk.topic_destroy(rkt);
    }
    Py_END_ALLOW_THREADS
    self->busy = 0;
    return PyBool_FromLong(err == RDK_ERR_NO_ERROR);
}

/* The partition reached its end: stop fetching it. GIL not needed. */
static void pause_if_done(Consumer *self, int32_t p) {
    if (!self->open[p] || self->position[p] < self->end[p])
        return;
    self->open[p] = 0;
    rdk_partition_list_t *list = rdk.list_new(1);
    rdk.list_add(list, self->topic, p);
    rdk.pause_partitions(self->rk, list);
    rdk.list_destroy(list);
}

/* Take the consumer's position (past markers and compacted offsets), then pause at the end. */
static void close_if_done(Consumer *self, int32_t p) {
    if (!self->open[p])
        return;
    rdk_partition_list_t *list = rdk.list_new(1);
    rdk.list_add(list, self->topic, p);
    if (rdk.position(self->rk, list) == RDK_ERR_NO_ERROR) {
        int64_t at = list->elems[0].offset;
        if (at >= 0 && at > self->position[p])
            self->position[p] = at < self->end[p] ? at : self->end[p];
    }
    rdk.list_destroy(list);
    pause_if_done(self, p);
}

static int any_open(Consumer *self) {
    for (int32_t p = 0; p < self->partitions; p++)
        if (self->open[p])
            return 1;
    return 0;
}

static int64_t left_to_read(Consumer *self) {
    int64_t left = 0;
    for (int32_t p = 0; p < self->partitions; p++)
        if (self->open[p])
            left += self->end[p] - self->position[p];
    return left;
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct {
    Growable partitions, offsets, timestamps;
    BinaryColumn keys, values;
    int64_t rows;
    int64_t nbytes;
    int error;            /* a Kafka error event (not partition EOF) */
    int32_t error_partition;
    char error_text[512];
    int out_of_memory;
} Batch;

static void batch_free(Batch *b) {
    free(b->partitions.data);
    free(b->offsets.data);
    free(b->timestamps.data);
    binary_free(&b->keys);
    binary_free(&b->values);
}

/* Append one message; -1 when out of memory. */
static int take(Consumer *self, Batch *b, const rdk_message_t *m) {
    int32_t p = m->partition;
    int64_t offset = m->offset;
    int tstype;
    int64_t timestamp = rdk.message_timestamp(m, &tstype);
    if (append(&b->partitions, &p, sizeof p) < 0 || append(&b->offsets, &offset, sizeof offset) < 0 ||
        append(&b->timestamps, &timestamp, sizeof timestamp) < 0 ||
        binary_append(&b->keys, b->rows, m->key, m->key_len) < 0 ||
        binary_append(&b->values, b->rows, m->payload, m->len) < 0)
        return -1;
    b->rows++;
    b->nbytes += (int64_t)(m->payload ? m->len : 0) + (int64_t)(m->key ? m->key_len : 0);
    self->position[p] = offset + 1;
    pause_if_done(self, p);
    return 0;
}

/* Whether `m` is a message of an open range, at or after its position and before its end. */
static int wanted_message(Consumer *self, const rdk_message_t *m) {
    int32_t p = m->partition;
    return m->err == RDK_ERR_NO_ERROR && in_range(self, p) && self->open[p] &&
           m->offset >= self->position[p] && m->offset < self->end[p];
}

/* One message or event from the queue: taken, skipped, or noted as an error. */
static void handle(Consumer *self, Batch *b, const rdk_message_t *m) {
    int32_t p = m->partition;
    if (m->err == RDK_ERR_PARTITION_EOF) {
        /* The EOF event carries the partition's end: skip markers before it. */
        if (in_range(self, p) && self->open[p]) {
            int64_t reached = m->offset < self->end[p] ? m->offset : self->end[p];
            if (reached > self->position[p])
                self->position[p] = reached;
            close_if_done(self, p);
        }
        return;
    }
    if (m->err != RDK_ERR_NO_ERROR) {
        if (!b->error) {
            b->error = m->err;
            b->error_partition = p;
            if (m->payload != NULL && m->len > 0) {
                size_t n = m->len < sizeof b->error_text - 1 ? m->len : sizeof b->error_text - 1;
                memcpy(b->error_text, m->payload, n);
                b->error_text[n] = 0;
            } else {
                snprintf(b->error_text, sizeof b->error_text, "%s", rdk.err2str(m->err));
            }
        }
        return;
    }
    if (in_range(self, p) && self->open[p] && m->offset >= self->end[p]) {
        /* Past the planned end: every offset before it was delivered, so what is left of
         * the range holds no message (transaction markers): the partition is done. */
        self->position[p] = self->end[p];
        pause_if_done(self, p);
        return;
    }
    if (!wanted_message(self, m))
        return; /* before the position, or of a partition not being read: not ours */
    if (take(self, b, m) < 0)
        b->out_of_memory = 1;
}

/* Whether `m` must wait for the next batch: this one is full, or taking `m` would pass the
 * byte limit (a batch's first message is always taken, however large). */
static int ends_batch(Consumer *self, Batch *b, const rdk_message_t *m, int64_t max_records,
                      int64_t max_bytes) {
    if (b->rows >= max_records)
        return 1;
    if (b->rows == 0 || !wanted_message(self, m))
        return 0;
    int64_t size = (int64_t)(m->payload ? m->len : 0) + (int64_t)(m->key ? m->key_len : 0);
    return b->nbytes + size > max_bytes;
}

/* Read until max_records / max_bytes (exactly: what does not fit is held for the next read),
 * every range read, an error, stop(), or no progress for idle_timeout seconds. Runs without
 * the GIL. */
static void read_into(Consumer *self, Batch *b, int64_t max_records, int64_t max_bytes,
                      double idle_timeout, size_t chunk) {
    double last_progress = now_seconds();
    while (!b->error && !b->out_of_memory && !self->stopped) {
        while (self->held_next < self->held_count) {
            rdk_message_t *m = self->held[self->held_next];
            if (ends_batch(self, b, m, max_records, max_bytes))
                return;
            self->held_next++;
            handle(self, b, m);
            rdk.message_destroy(m);
        }
        if (!any_open(self) || b->rows >= max_records || b->nbytes >= max_bytes)
            return;
        /* consume_batch_queue returns early only once it has `wanted`: never ask for more
         * than the open ranges still hold, or the end of every run waits out the timeout. */
        int64_t wanted = (int64_t)chunk;
        if (max_records - b->rows < wanted)
            wanted = max_records - b->rows;
        int64_t left = left_to_read(self);
        if (left < wanted)
            wanted = left;
        if (wanted < 1)
            wanted = 1;
        ssize_t got = rdk.consume_batch_queue(self->queue, 500, self->held, (size_t)wanted);
        if (got < 0) {
            b->error = -1;
            snprintf(b->error_text, sizeof b->error_text, "consume failed (errno %d)", errno);
            return;
        }
        self->held_next = 0;
        self->held_count = (size_t)got;
        if (got == 0) {
            for (int32_t p = 0; p < self->partitions; p++)
                close_if_done(self, p);
            if (any_open(self) && now_seconds() - last_progress > idle_timeout)
                return; /* e.g. an open transaction holds the last stable offset back */
            continue;
        }
        last_progress = now_seconds();
    }
}

static PyObject *binary_buffers(BinaryColumn *c) {
    PyObject *validity = c->nulls ? block_from(&c->validity) : Py_NewRef(Py_None);
    PyObject *offsets = block_from(&c->offsets);
    PyObject *data = block_from(&c->data);
    if (!validity || !offsets || !data) {
        Py_XDECREF(validity);
        Py_XDECREF(offsets);
        Py_XDECREF(data);
        return NULL;
    }
    return Py_BuildValue("(NNNL)", validity, offsets, data, (long long)c->nulls);
}

/* read(max_records, max_bytes, idle_timeout, chunk) -> (rows, nbytes, partitions,
 * offsets, timestamps, keys, values): each column a buffer (keys and values a tuple of
 * validity-or-None, offsets, data, null count). Raises KafkaError-like RuntimeError. */
static PyObject *consumer_read(Consumer *self, PyObject *args) {
    long long max_records, max_bytes;
    double idle_timeout;
    int chunk;
    if (!PyArg_ParseTuple(args, "LLdi", &max_records, &max_bytes, &idle_timeout, &chunk) ||
        check_usable(self) < 0)
        return NULL;
    if (self->position == NULL)
        return PyErr_Format(PyExc_RuntimeError, "nothing assigned");
    if (chunk < 1)
        chunk = 1;
    if (self->held_capacity < (size_t)chunk) {
        /* realloc keeps the messages held from the last read */
        rdk_message_t **held = realloc(self->held, sizeof(rdk_message_t *) * (size_t)chunk);
        if (held == NULL)
            return PyErr_NoMemory();
        self->held = held;
        self->held_capacity = (size_t)chunk;
    }
    Batch b;
    memset(&b, 0, sizeof b);
    int64_t zero = 0;
    int started = append(&b.keys.offsets, &zero, sizeof zero) == 0 &&
                  append(&b.values.offsets, &zero, sizeof zero) == 0;
    self->busy = 1;
    if (started) {
        Py_BEGIN_ALLOW_THREADS
        read_into(self, &b, max_records, max_bytes, idle_timeout, (size_t)chunk);
        Py_END_ALLOW_THREADS
    }
    self->busy = 0;
    if (!started || b.out_of_memory) {
        batch_free(&b);
        return PyErr_NoMemory();
    }
    if (b.error) {
        PyErr_Format(PyExc_RuntimeError, "reading %s[%d]: %s", self->topic, b.error_partition,
                     b.error_text);
        batch_free(&b);
        return NULL;
    }
    PyObject *result = Py_BuildValue("(LLNNNNN)", (long long)b.rows, (long long)b.nbytes,
                                     block_from(&b.partitions), block_from(&b.offsets),
                                     block_from(&b.timestamps), binary_buffers(&b.keys),
                                     binary_buffers(&b.values));
    batch_free(&b);
    return result;
}

/* positions() -> {partition: next offset} of the assigned ranges. */
static PyObject *consumer_positions(Consumer *self, PyObject *unused) {
    PyObject *out = PyDict_New();
    if (out == NULL || self->position == NULL)
        return out;
    for (int32_t p = 0; p < self->partitions; p++) {
        if (!self->assigned[p])
            continue;
        PyObject *key = PyLong_FromLong(p), *value = PyLong_FromLongLong(self->position[p]);
        if (!key || !value || PyDict_SetItem(out, key, value) < 0) {
            Py_XDECREF(key);
            Py_XDECREF(value);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(key);
        Py_DECREF(value);
    }
    return out;
}

/* open_partitions() -> list of partitions still to be read. */
static PyObject *consumer_open_partitions(Consumer *self, PyObject *unused) {
    PyObject *out = PyList_New(0);
    if (out == NULL || self->open == NULL)
        return out;
    for (int32_t p = 0; p < self->partitions; p++) {
        if (!self->open[p])
            continue;
        PyObject *item = PyLong_FromLong(p);
        if (item == NULL || PyList_Append(out, item) < 0) {
            Py_XDECREF(item);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(item);
    }
    return out;
}

/* stop(): a read in progress (on another thread), or the next one, returns at its next
 * consume boundary, with what it has; until the next assign(). */
static PyObject *consumer_stop(Consumer *self, PyObject *unused) {
    self->stopped = 1;
    Py_RETURN_NONE;
}

/* unassign(): drop the assignment; nothing to do once closed (a reading generator finalized
 * after its consumer was closed ends quietly). */
static PyObject *consumer_unassign(Consumer *self, PyObject *unused) {
    if (self->rk == NULL)
        Py_RETURN_NONE;
    if (check_usable(self) < 0)
        return NULL;
    drop_held(self);
    Py_BEGIN_ALLOW_THREADS
    rdk.assign(self->rk, NULL);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *consumer_close(Consumer *self, PyObject *unused) {
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "the consumer is in use by another thread");
        return NULL;
    }
    consumer_release(self);
    Py_RETURN_NONE;
}

static PyMethodDef consumer_methods[] = {
    {"assign", (PyCFunction)consumer_assign, METH_VARARGS,
     "assign(topic, [(partition, start, end), ...]): read [start, end) of each partition."},
    {"prepare", (PyCFunction)consumer_prepare, METH_VARARGS,
     "prepare(topic, timeout_s) -> bool: connect and fetch the topic's metadata now."},
    {"read", (PyCFunction)consumer_read, METH_VARARGS,
     "read(max_records, max_bytes, idle_timeout_s, chunk) -> one batch as column buffers."},
    {"positions", (PyCFunction)consumer_positions, METH_NOARGS,
     "{partition: next offset to read} of the assigned ranges."},
    {"open_partitions", (PyCFunction)consumer_open_partitions, METH_NOARGS,
     "Partitions not yet read to their end."},
    {"stop", (PyCFunction)consumer_stop, METH_NOARGS,
     "Make a read in progress return at its next consume boundary (any thread)."},
    {"unassign", (PyCFunction)consumer_unassign, METH_NOARGS, "Drop the assignment."},
    {"close", (PyCFunction)consumer_close, METH_NOARGS, "Close the consumer (idempotent)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject ConsumerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "lakehouse.kafka._rdkafka_columns.Consumer",
    .tp_basicsize = sizeof(Consumer),
    .tp_dealloc = (destructor)consumer_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A librdkafka consumer reading assigned ranges into Arrow column buffers.",
    .tp_methods = consumer_methods,
    .tp_init = (initproc)consumer_init,
    .tp_new = PyType_GenericNew,
};

static PyMethodDef module_methods[] = {
    {"load", load, METH_VARARGS, "load(path) -> librdkafka version: bind to that library."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_rdkafka_columns",
    "Kafka ranges read by librdkafka into Arrow column buffers (see the C source).", -1,
    module_methods,
};

PyMODINIT_FUNC PyInit__rdkafka_columns(void) {
    if (PyType_Ready(&BlockType) < 0 || PyType_Ready(&ConsumerType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&ConsumerType);
    if (PyModule_AddObject(m, "Consumer", (PyObject *)&ConsumerType) < 0) {
        Py_DECREF(&ConsumerType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
