/* C test of the Engine section of the ABI on the builder + Olive generation fixture prepared for batching
 * (make_fixtures.py writes FIXTURE_DIR/engine). Every request's tokens must equal the recorded PyTorch + PEFT
 * greedy ids, whatever step it arrives at; plus lifetimes and named errors.
 * Usage: test_engine FIXTURE_DIR. Prints "N passed, N failed"; exit code 1 on any failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "multilora/multilora.h"

static int g_passed, g_failed;

#define CHECK(cond, ...)                                                  \
  do {                                                                    \
    if (cond) {                                                           \
      g_passed++;                                                         \
    } else {                                                              \
      g_failed++;                                                         \
      fprintf(stderr, "FAIL %s:%d: %s — ", __FILE__, __LINE__, #cond);    \
      fprintf(stderr, __VA_ARGS__);                                       \
      fprintf(stderr, " (last error: %s)\n", mlora_last_error_message()); \
    }                                                                     \
  } while (0)

#define CHECK_STATUS(call, expected)                                                                                   \
  do {                                                                                                                 \
    mlora_status_t s_ = (call);                                                                                        \
    CHECK(s_ == (expected), "%s returned %s, expected %s", #call, mlora_status_name(s_), mlora_status_name(expected)); \
  } while (0)

#define MAX_REQ 16
#define MAX_TOK 64

typedef struct {
  char set[8];
  int32_t prompt[MAX_TOK];
  size_t prompt_len;
  int32_t expect[MAX_TOK];
  size_t expect_len;
} spec_t;

static spec_t g_specs[MAX_REQ];
static size_t g_count;
static int g_new_tokens;

static int load_specs(const char* dir) {
  char path[1200];
  snprintf(path, sizeof path, "%s/engine/requests.txt", dir);
  FILE* f = fopen(path, "r");
  if (!f) return 0;
  while (g_count < MAX_REQ) {
    spec_t* s = &g_specs[g_count];
    if (fscanf(f, "%7s %zu", s->set, &s->prompt_len) != 2) break;
    for (size_t i = 0; i < s->prompt_len; ++i) {
      if (fscanf(f, "%d", &s->prompt[i]) != 1) return 0;
    }
    if (fscanf(f, "%zu", &s->expect_len) != 1) return 0;
    for (size_t i = 0; i < s->expect_len; ++i) {
      if (fscanf(f, "%d", &s->expect[i]) != 1) return 0;
    }
    g_count++;
  }
  fclose(f);
  snprintf(path, sizeof path, "%s/engine/new_tokens.txt", dir);
  f = fopen(path, "r");
  if (!f) return 0;
  const int ok = fscanf(f, "%d", &g_new_tokens) == 1;
  fclose(f);
  return ok && g_count > 0;
}

static mlora_generator_params_t* params_for(const mlora_model_t* model, const mlora_adapters_t* reg, const spec_t* s) {
  mlora_generator_params_t* p = NULL;
  CHECK_STATUS(mlora_generator_params_create(model, &p), MLORA_STATUS_OK);
  CHECK_STATUS(mlora_generator_params_set_search_number(p, "max_length", (double)(s->prompt_len + g_new_tokens)),
               MLORA_STATUS_OK);
  const char* a[1] = {"a"};
  const char* b[1] = {"b"};
  const char* ab[2] = {"a", "b"};
  if (strcmp(s->set, "a") == 0) {
    CHECK_STATUS(mlora_generator_params_set_active_adapters(p, reg, a, NULL, 1), MLORA_STATUS_OK);
  } else if (strcmp(s->set, "b") == 0) {
    CHECK_STATUS(mlora_generator_params_set_active_adapters(p, reg, b, NULL, 1), MLORA_STATUS_OK);
  } else if (strcmp(s->set, "a+b") == 0) {
    CHECK_STATUS(mlora_generator_params_set_active_adapters(p, reg, ab, NULL, 2), MLORA_STATUS_OK);
  }
  return p;
}

/* Reads every token of a finished (or finishing) request; blocking reads with a bounded number of tries. */
static size_t read_all(mlora_request_t* r, int32_t* out, size_t capacity) {
  size_t total = 0;
  for (int tries = 0; tries < 1000; ++tries) {
    size_t n = 0;
    int32_t done = 0;
    CHECK_STATUS(mlora_request_read(r, out + total, capacity - total, 100, &n, &done), MLORA_STATUS_OK);
    total += n;
    if (done || total == capacity) break;
  }
  return total;
}

static void compare(const spec_t* s, const int32_t* got, size_t n, const char* what) {
  int same = n == s->expect_len;
  for (size_t i = 0; same && i < n; ++i) same = got[i] == s->expect[i];
  CHECK(same, "%s: set %s prompt of %zu: %zu tokens differ from the PyTorch+PEFT reference", what, s->set,
        s->prompt_len, n);
}

static void test_manual_steps(const mlora_model_t* model, const mlora_adapters_t* reg) {
  mlora_engine_options_t* o = NULL;
  CHECK_STATUS(mlora_engine_options_create(&o), MLORA_STATUS_OK);
  CHECK_STATUS(mlora_engine_options_set_max_batch_size(o, 3), MLORA_STATUS_OK);
  CHECK_STATUS(mlora_engine_options_set_max_tokens_per_step(o, 4), MLORA_STATUS_OK);
  CHECK_STATUS(mlora_engine_options_set_worker(o, 0), MLORA_STATUS_OK);
  CHECK_STATUS(mlora_engine_options_set_worker(o, 2), MLORA_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(mlora_engine_options_set_max_batch_size(o, 0), MLORA_STATUS_INVALID_ARGUMENT);
  mlora_engine_t* e = NULL;
  CHECK_STATUS(mlora_engine_create(model, o, &e), MLORA_STATUS_OK);
  mlora_engine_options_release(o);
  if (!e) return;
  mlora_request_t* reqs[MAX_REQ] = {0};
  size_t submitted = 0;
  int32_t more = 1;
  /* request i arrives before step 2*i: rows join and leave while others decode */
  for (int step = 0; step < 1000 && (more || submitted < g_count); ++step) {
    if (step % 2 == 0 && submitted < g_count) {
      mlora_generator_params_t* p = params_for(model, reg, &g_specs[submitted]);
      CHECK_STATUS(
          mlora_engine_submit(e, p, g_specs[submitted].prompt, g_specs[submitted].prompt_len, &reqs[submitted]),
          MLORA_STATUS_OK);
      mlora_generator_params_release(p); /* the request keeps the params */
      submitted++;
    }
    CHECK_STATUS(mlora_engine_step(e, &more), MLORA_STATUS_OK);
  }
  uint64_t queued = 9, running = 9, finished = 0;
  CHECK_STATUS(mlora_engine_stats(e, &queued, &running, &finished, NULL, NULL, NULL), MLORA_STATUS_OK);
  CHECK(queued == 0 && running == 0 && finished == g_count, "stats %llu %llu %llu", (unsigned long long)queued,
        (unsigned long long)running, (unsigned long long)finished);
  for (size_t i = 0; i < g_count; ++i) {
    int32_t got[MAX_TOK];
    const size_t n = read_all(reqs[i], got, MAX_TOK);
    compare(&g_specs[i], got, n, "manual steps");
    mlora_finish_reason_t reason = MLORA_FINISH_NONE;
    CHECK_STATUS(mlora_request_finish_reason(reqs[i], &reason), MLORA_STATUS_OK);
    CHECK(reason == MLORA_FINISH_EOS || reason == MLORA_FINISH_LENGTH, "finish reason %d", reason);
    uint64_t prompt = 0, generated = 0;
    double queue = -1, ttft = -2;
    CHECK_STATUS(mlora_request_usage(reqs[i], &prompt, &generated, &queue, &ttft), MLORA_STATUS_OK);
    CHECK(prompt == g_specs[i].prompt_len && generated == n && queue >= 0 && ttft >= queue, "usage");
    int32_t cancelled = 7;
    CHECK_STATUS(mlora_request_cancel(reqs[i], &cancelled), MLORA_STATUS_OK); /* finished: nothing to do */
    CHECK(cancelled == 0, "cancel of a finished request");
    mlora_request_release(reqs[i]);
  }
  CHECK_STATUS(mlora_engine_close(e), MLORA_STATUS_OK);
  mlora_request_t* r = NULL;
  CHECK_STATUS(mlora_engine_submit(e, NULL, g_specs[0].prompt, 1, &r), MLORA_STATUS_INVALID_HANDLE);
  mlora_generator_params_t* p = params_for(model, reg, &g_specs[0]);
  CHECK_STATUS(mlora_engine_submit(e, p, g_specs[0].prompt, g_specs[0].prompt_len, &r), MLORA_STATUS_CLOSED);
  CHECK_STATUS(mlora_engine_step(e, NULL), MLORA_STATUS_CLOSED);
  mlora_generator_params_release(p);
  mlora_engine_release(e);
}

static void test_worker(const mlora_model_t* model, const mlora_adapters_t* reg) {
  mlora_engine_t* e = NULL;
  CHECK_STATUS(mlora_engine_create(model, NULL, &e), MLORA_STATUS_OK); /* defaults: worker on */
  if (!e) return;
  CHECK_STATUS(mlora_engine_step(e, NULL), MLORA_STATUS_INVALID_ARGUMENT);
  mlora_request_t* reqs[MAX_REQ] = {0};
  for (size_t i = 0; i < g_count; ++i) {
    mlora_generator_params_t* p = params_for(model, reg, &g_specs[i]);
    CHECK_STATUS(mlora_engine_submit(e, p, g_specs[i].prompt, g_specs[i].prompt_len, &reqs[i]), MLORA_STATUS_OK);
    mlora_generator_params_release(p);
  }
  for (size_t i = 0; i < g_count; ++i) {
    int32_t got[MAX_TOK];
    compare(&g_specs[i], got, read_all(reqs[i], got, MAX_TOK), "worker");
  }
  /* close while requests may still run: every request ends up finished — normally, or cancelled with CLOSED —
   * and a released one does not stop its neighbour (the worker's timing decides which; both are checked) */
  mlora_generator_params_t* p = NULL;
  CHECK_STATUS(mlora_generator_params_create(model, &p), MLORA_STATUS_OK);
  CHECK_STATUS(mlora_generator_params_set_search_number(p, "max_length", 64), MLORA_STATUS_OK);
  CHECK_STATUS(mlora_generator_params_set_search_number(p, "min_length", 64), MLORA_STATUS_OK);
  mlora_request_t* early = NULL;
  mlora_request_t* late = NULL;
  CHECK_STATUS(mlora_engine_submit(e, p, g_specs[0].prompt, g_specs[0].prompt_len, &early), MLORA_STATUS_OK);
  CHECK_STATUS(mlora_engine_submit(e, p, g_specs[0].prompt, g_specs[0].prompt_len, &late), MLORA_STATUS_OK);
  mlora_request_release(early);
  int32_t tok[4];
  size_t n = 0;
  CHECK_STATUS(mlora_request_read(late, tok, 1, -1, &n, NULL), MLORA_STATUS_OK);
  CHECK(n == 1, "a token before close");
  mlora_engine_release(e); /* closes */
  mlora_finish_reason_t reason = MLORA_FINISH_NONE;
  CHECK_STATUS(mlora_request_finish_reason(late, &reason), MLORA_STATUS_OK);
  mlora_status_t st = MLORA_STATUS_OK;
  char msg[256];
  size_t len = 0;
  CHECK_STATUS(mlora_request_error(late, &st, msg, sizeof msg, &len), MLORA_STATUS_OK);
  uint64_t generated = 0;
  CHECK_STATUS(mlora_request_usage(late, NULL, &generated, NULL, NULL), MLORA_STATUS_OK);
  CHECK((reason == MLORA_FINISH_CANCELLED && st == MLORA_STATUS_CLOSED && strstr(msg, "closed") != NULL) ||
            (reason == MLORA_FINISH_LENGTH && st == MLORA_STATUS_OK && generated == 64 - g_specs[0].prompt_len),
        "after close: reason %d status %s '%s', %llu tokens", reason, mlora_status_name(st), msg,
        (unsigned long long)generated);
  mlora_request_release(late);
  mlora_generator_params_release(p);
}

/* close with a running and a queued request (manual steps: deterministic): both cancelled with CLOSED */
static void test_close(const mlora_model_t* model) {
  mlora_engine_options_t* o = NULL;
  CHECK_STATUS(mlora_engine_options_create(&o), MLORA_STATUS_OK);
  CHECK_STATUS(mlora_engine_options_set_worker(o, 0), MLORA_STATUS_OK);
  CHECK_STATUS(mlora_engine_options_set_max_batch_size(o, 1), MLORA_STATUS_OK);
  mlora_engine_t* e = NULL;
  CHECK_STATUS(mlora_engine_create(model, o, &e), MLORA_STATUS_OK);
  mlora_engine_options_release(o);
  mlora_generator_params_t* p = NULL;
  CHECK_STATUS(mlora_generator_params_create(model, &p), MLORA_STATUS_OK);
  CHECK_STATUS(mlora_generator_params_set_search_number(p, "min_length", 64), MLORA_STATUS_OK);
  mlora_request_t* r[2] = {NULL, NULL};
  for (int i = 0; i < 2; ++i) {
    CHECK_STATUS(mlora_engine_submit(e, p, g_specs[0].prompt, g_specs[0].prompt_len, &r[i]), MLORA_STATUS_OK);
  }
  for (int i = 0; i < 3; ++i) CHECK_STATUS(mlora_engine_step(e, NULL), MLORA_STATUS_OK);
  mlora_engine_release(e);
  for (int i = 0; i < 2; ++i) {
    mlora_finish_reason_t reason = MLORA_FINISH_NONE;
    mlora_status_t st = MLORA_STATUS_OK;
    uint64_t generated = 0;
    size_t len = 0;
    CHECK_STATUS(mlora_request_finish_reason(r[i], &reason), MLORA_STATUS_OK);
    CHECK_STATUS(mlora_request_error(r[i], &st, NULL, 0, &len), MLORA_STATUS_BUFFER_TOO_SMALL);
    CHECK_STATUS(mlora_request_usage(r[i], NULL, &generated, NULL, NULL), MLORA_STATUS_OK);
    CHECK(reason == MLORA_FINISH_CANCELLED && st == MLORA_STATUS_CLOSED && len > 1, "request %d: %d %s", i, reason,
          mlora_status_name(st));
    CHECK(i == 0 ? generated == 3 : generated == 0, "request %d generated %llu", i, (unsigned long long)generated);
    mlora_request_release(r[i]);
  }
  mlora_generator_params_release(p);
}

static void test_errors(const mlora_model_t* model, const mlora_model_t* plain) {
  mlora_engine_t* e = NULL;
  CHECK_STATUS(mlora_engine_create(plain, NULL, &e), MLORA_STATUS_INVALID_ARGUMENT);
  CHECK(strstr(mlora_last_error_message(), "multilora prepare-batching") != NULL, "names the tool");
  mlora_engine_options_t* o = NULL;
  CHECK_STATUS(mlora_engine_options_create(&o), MLORA_STATUS_OK);
  CHECK_STATUS(mlora_engine_options_set_worker(o, 0), MLORA_STATUS_OK);
  CHECK_STATUS(mlora_engine_options_set_max_queue(o, 1), MLORA_STATUS_OK);
  CHECK_STATUS(mlora_engine_create(model, o, &e), MLORA_STATUS_OK);
  mlora_engine_options_release(o);
  mlora_generator_params_t* p = NULL;
  CHECK_STATUS(mlora_generator_params_create(model, &p), MLORA_STATUS_OK);
  CHECK_STATUS(mlora_generator_params_set_search_number(p, "max_new_tokens", -1), MLORA_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(mlora_generator_params_set_search_number(p, "max_new_tokens", 1e9), MLORA_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(mlora_generator_params_set_search_number(p, "max_new_tokens", 3), MLORA_STATUS_OK);
  const int32_t bad_stop[1] = {-5};
  CHECK_STATUS(mlora_generator_params_set_stop_tokens(p, bad_stop, 1), MLORA_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(mlora_generator_params_set_stop_tokens(p, NULL, 0), MLORA_STATUS_OK);
  int32_t long_prompt[80];
  for (int i = 0; i < 80; ++i) long_prompt[i] = 5;
  mlora_request_t* r = NULL;
  CHECK_STATUS(mlora_engine_submit(e, p, long_prompt, 80, &r), MLORA_STATUS_SHAPE_MISMATCH);
  CHECK_STATUS(mlora_engine_submit(e, p, long_prompt, 0, &r), MLORA_STATUS_INVALID_ARGUMENT);
  CHECK_STATUS(mlora_engine_submit(e, p, NULL, 3, &r), MLORA_STATUS_INVALID_ARGUMENT);
  mlora_generator_params_t* other = NULL;
  CHECK_STATUS(mlora_generator_params_create(plain, &other), MLORA_STATUS_OK);
  /* params of the unprepared folder this model was prepared from are accepted (same LoRA inputs) */
  CHECK_STATUS(mlora_engine_submit(e, other, long_prompt, 3, &r), MLORA_STATUS_OK);
  mlora_generator_params_release(other);
  CHECK_STATUS(mlora_request_cancel(r, NULL), MLORA_STATUS_OK);
  CHECK_STATUS(mlora_engine_step(e, NULL), MLORA_STATUS_OK); /* drops it: the queue of 1 is free again */
  mlora_request_release(r);
  r = NULL;
  CHECK_STATUS(mlora_engine_submit(e, p, long_prompt, 3, &r), MLORA_STATUS_OK);
  mlora_request_t* r2 = NULL;
  CHECK_STATUS(mlora_engine_submit(e, p, long_prompt, 3, &r2), MLORA_STATUS_BUSY); /* queue of 1 is full */
  int32_t c1 = 0, c2 = 1;
  CHECK_STATUS(mlora_request_cancel(r, &c1), MLORA_STATUS_OK);
  CHECK_STATUS(mlora_request_cancel(r, &c2), MLORA_STATUS_OK); /* twice: harmless */
  CHECK(c1 == 1 && c2 == 0, "cancel twice: %d %d", c1, c2);
  int32_t more = 1;
  CHECK_STATUS(mlora_engine_step(e, &more), MLORA_STATUS_OK);
  CHECK(more == 0, "the cancelled request left");
  mlora_finish_reason_t reason = MLORA_FINISH_NONE;
  CHECK_STATUS(mlora_request_finish_reason(r, &reason), MLORA_STATUS_OK);
  CHECK(reason == MLORA_FINISH_CANCELLED, "reason %d", reason);
  size_t n = 9;
  int32_t done = 0;
  CHECK_STATUS(mlora_request_read(r, NULL, 0, 0, &n, &done), MLORA_STATUS_OK);
  CHECK(n == 0 && done == 1, "drained");
  CHECK_STATUS(mlora_request_read(r, NULL, 4, 0, &n, &done), MLORA_STATUS_INVALID_ARGUMENT);
  mlora_request_release(r);
  CHECK_STATUS(mlora_request_read(r, NULL, 0, 0, &n, &done), MLORA_STATUS_INVALID_HANDLE); /* after release */
  CHECK_STATUS(mlora_request_cancel(r, NULL), MLORA_STATUS_INVALID_HANDLE);
  mlora_request_release(r); /* double release: ignored */
  mlora_generator_params_release(p);
  mlora_engine_release(e);
  CHECK_STATUS(mlora_engine_close(e), MLORA_STATUS_INVALID_HANDLE);
  CHECK(strcmp(mlora_status_name(MLORA_STATUS_BUSY), "MLORA_STATUS_BUSY") == 0, "status name");
  CHECK(strcmp(mlora_status_name(MLORA_STATUS_CLOSED), "MLORA_STATUS_CLOSED") == 0, "status name");
}

int main(int argc, char** argv) {
  if (argc < 2 || !load_specs(argv[1])) {
    fprintf(stderr, "usage: test_engine FIXTURE_DIR (with engine/requests.txt from make_fixtures.py)\n");
    return 2;
  }
  char path[1200];
  snprintf(path, sizeof path, "%s/engine", argv[1]);
  mlora_model_t* model = NULL;
  CHECK_STATUS(mlora_model_create(path, NULL, &model), MLORA_STATUS_OK);
  mlora_adapters_t* reg = NULL;
  CHECK_STATUS(mlora_adapters_create(model, &reg), MLORA_STATUS_OK);
  snprintf(path, sizeof path, "%s/engine/adapters/a.onnx_adapter", argv[1]);
  CHECK_STATUS(mlora_adapters_load(reg, path, "a", MLORA_LOAD_DEFAULT), MLORA_STATUS_OK);
  snprintf(path, sizeof path, "%s/engine/adapters/b.onnx_adapter", argv[1]);
  CHECK_STATUS(mlora_adapters_load(reg, path, "b", MLORA_LOAD_DEFAULT), MLORA_STATUS_OK);
  if (model && reg) {
    test_manual_steps(model, reg);
    test_worker(model, reg);
    test_close(model);
    /* an unprepared model: the same folder before prepare_batching */
    snprintf(path, sizeof path, "%s/engine_plain", argv[1]);
    mlora_model_t* plain = NULL;
    CHECK_STATUS(mlora_model_create(path, NULL, &plain), MLORA_STATUS_OK);
    if (plain) test_errors(model, plain);
    mlora_model_release(plain);
  }
  mlora_adapters_release(reg);
  mlora_model_release(model);
  printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed ? 1 : 0;
}
