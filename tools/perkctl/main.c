/*
 * main.c — perkctl, the operator's command line over perkhubd's HTTP API.
 *
 * This file owns the global options (--url, --token, --timeout, --json) and
 * the command table; each command is one function in a cmd_*.c file. perkctl
 * links only libcurl and jansson: it is a client of the API like any other,
 * and knows nothing of the daemon's internals. The one file of the core it
 * compiles in is the wiping allocator (crypto/wipe_alloc.h: libc and jansson
 * only), so that the codes in the answers it parses are wiped when jansson
 * frees them.
 */
#include "perkctl.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#define PK_DEFAULT_URL "http://127.0.0.1:8080"

static const char global_usage[] =
    "usage: perkctl [--url URL] [--token TOKEN] [--timeout SECONDS] [--json]\n"
    "               [--cacert FILE] [--cert FILE --key FILE] COMMAND [ARGS]\n"
    "       perkctl [--url URL] --version\n"
    "\n"
    "perkctl is the operator's command line for perkhubd's HTTP API.\n"
    "\n"
    "global options (before the command):\n"
    "  --url URL          server base URL (env PERKHUB_URL; default " PK_DEFAULT_URL ")\n"
    "  --token TOKEN      API bearer token (env PERKHUB_TOKEN). Prefer the environment:\n"
    "                     a token given here lands in your shell history and in the\n"
    "                     process list. perkctl never prints it.\n"
    "  --timeout SECONDS  give up on a request after this long (default 60; 0 = never)\n"
    "  --json             print the server's JSON answers instead of the human format\n"
    "  --cacert FILE      https: verify the server against this CA (env PERKHUB_CACERT;\n"
    "                     default: the system's CAs)\n"
    "  --cert FILE, --key FILE\n"
    "                     https: present this client certificate and key (PEM; env\n"
    "                     PERKHUB_CERT, PERKHUB_KEY): a client with cert_sha256 needs it\n"
    "  --version          print perkctl's version and, when the server answers, its own\n"
    "\n"
    "commands:\n";

static const char global_usage_tail[] =
    "\n"
    "exit status: 0 done; 1 the server said no (printed as 'perkctl: CODE: MESSAGE\n"
    "(request ID)'); 2 usage error; 3 cannot reach the server (or it timed out).\n"
    "Run 'perkctl COMMAND --help' for a command's options and an example.\n";

static const pk_cmd commands[] = {
    {"import", pk_cmd_import, "import card codes from a CSV file as a new batch",
     "usage: perkctl import FILE --supplier ID --sku SKU --cost PRICE [--note TEXT]\n"
     "\n"
     "Imports the card codes in FILE as one new batch (POST /v1/batches). Each line\n"
     "is \"code[,card_no[,expires_at]]\"; a first line \"code,card_no,expires_at\" is\n"
     "taken as a header. FILE \"-\" reads standard input. The file is streamed, so\n"
     "millions of lines are fine; raise --timeout if the server needs over 60 s.\n"
     "\n"
     "  --supplier ID   the supplier the codes were bought from\n"
     "  --sku SKU       the product they are codes for\n"
     "  --cost PRICE    unit cost in CNY, e.g. 19.80\n"
     "  --note TEXT     kept with the batch (invoice number, ...)\n"
     "\n"
     "A file with any bad line is refused whole: nothing is imported, each bad line\n"
     "is listed on stderr as \"line N: reason\", and perkctl exits 1.\n"
     "Needs an ops token.\n"
     "\n"
     "example:\n"
     "  $ perkctl import codes.csv --supplier sandbox --sku iqiyi.gold.1m --cost 19.80\n"
     "  imported batch 2: 2 codes of iqiyi.gold.1m from sandbox\n"},
    {"void", pk_cmd_void, "void a batch the supplier voided upstream; lists affected orders",
     "usage: perkctl void BATCH_ID --reason TEXT\n"
     "\n"
     "Voids every code of batch BATCH_ID (POST /v1/batches/ID/void): codes not yet\n"
     "issued leave stock, codes already issued become voided too, and the orders\n"
     "that got one are listed, so support can replace them. Needs an ops token.\n"
     "\n"
     "  --reason TEXT   why, kept in the batch and its event\n"
     "\n"
     "example:\n"
     "  $ perkctl void 3 --reason \"supplier voided\"\n"
     "  voided batch 3: 1200 codes voided, 1 affected order\n"
     "  ORDER  CLIENT  CLIENT_ORDER_ID\n"
     "  7      mall    A-1\n"},
    {"batches", pk_cmd_batches, "list the batches of codes, or show one",
     "usage: perkctl batches [list] [--after ID] [--limit N]\n"
     "       perkctl batches show ID\n"
     "\n"
     "list: every batch, oldest first (GET /v1/batches): supplier, SKU, how many codes,\n"
     "unit cost, active or voided, when, the note. When there are more, the last line\n"
     "says where to continue: \"more: --after ID\".\n"
     "show: one batch with its codes counted by state (GET /v1/batches/ID).\n"
     "Needs an ops token.\n"
     "\n"
     "example:\n"
     "  $ perkctl batches\n"
     "  ID  SUPPLIER  SKU            COUNT  UNIT_COST  STATE   CREATED                   NOTE\n"
     "  1   sandbox   iqiyi.gold.1m  1000   19.80      active  2026-12-06T08:00:00.000Z  demo\n"},
    {"order", pk_cmd_order, "order card codes or a recharge (idempotent on --id)",
     "usage: perkctl order --sku SKU --id CLIENT_ORDER_ID [--qty N] [--account ACCOUNT]\n"
     "                     [--wait SECONDS]\n"
     "\n"
     "Places an order (POST /v1/orders) and prints the order, then its codes, one\n"
     "per line. Codes are printed to stdout only.\n"
     "\n"
     "  --sku SKU              the product\n"
     "  --id CLIENT_ORDER_ID   your id for the order: the same id again returns the\n"
     "                         same order and codes, never a second fulfillment\n"
     "  --qty N                how many codes (default 1)\n"
     "  --account ACCOUNT      the account to credit, for a recharge product\n"
     "  --wait SECONDS         hold the request up to this long for a supplier's final\n"
     "                         answer (default 0: a supplier order may come back\n"
     "                         processing, without codes yet); below --timeout\n"
     "\n"
     "If the request times out (exit 3) the order may still have been placed: run the\n"
     "same command again, with the same --id, to get its result. Exit 1 when the\n"
     "server refuses (out_of_stock, unknown_sku, conflict, ...) or the order failed.\n"
     "Needs a fulfill token.\n"
     "\n"
     "example:\n"
     "  $ perkctl order --sku iqiyi.gold.1m --id A-1\n"
     "  order:         1\n"
     "  client order:  A-1\n"
     "  state:         succeeded\n"
     "  ...\n"
     "  codes:\n"
     "  IQY-FC90-A0B7-3200  card_no=881000001  expires_at=2027-12-31T15:59:59.999Z\n"},
    {"orders", pk_cmd_orders, "list orders, oldest first, with filters",
     "usage: perkctl orders [--state STATE] [--client NAME] [--sku SKU] [--since TIME]\n"
     "                      [--after ID] [--limit N]\n"
     "\n"
     "Lists orders in ascending id, without codes (GET /v1/orders): the token's own,\n"
     "or with an ops token every client's.\n"
     "\n"
     "  --state STATE   only processing, succeeded, failed or unknown orders\n"
     "  --client NAME   only this client's (ops; another token may name only itself)\n"
     "  --sku SKU       only orders of this product\n"
     "  --since TIME    only orders created at or after TIME (RFC 3339,\n"
     "                  2026-12-06T00:00:00+08:00)\n"
     "  --after ID      only orders with an id above ID (the next page)\n"
     "  --limit N       at most N orders (1 to 1000, default 100)\n"
     "\n"
     "When there are more, the last line says where to continue: \"more: --after ID\"\n"
     "(with the same filters). A page can hold fewer than N orders when the filters\n"
     "skip many: the server reads a bounded number per request.\n"
     "\n"
     "example:\n"
     "  $ perkctl orders --state succeeded --limit 2\n"
     "  ID  CLIENT  CLIENT_ORDER_ID  SKU            QTY  STATE      CREATED\n"
     "  1   mall    A-1              iqiyi.gold.1m  2    succeeded  2026-11-24T19:42:00.123Z\n"
     "  2   mall    A-3              iqiyi.gold.1m  1    succeeded  2026-11-24T19:43:10.002Z\n"
     "  more: --after 2\n"},
    {"order-get", pk_cmd_order_get, "show one order (with codes, to its owner)",
     "usage: perkctl order-get ID\n"
     "       perkctl order-get --client-order-id CLIENT_ORDER_ID [--client NAME]\n"
     "\n"
     "Shows one order: GET /v1/orders/ID, or GET /v1/orders?client_order_id=... for\n"
     "your own id; with --client (an ops token), a mall's order by the mall's own id.\n"
     "The client that placed it sees its codes; ops sees it without.\n"
     "\n"
     "examples:\n"
     "  $ perkctl order-get 1\n"
     "  $ PERKHUB_TOKEN=$OPS_TOKEN perkctl order-get --client mall --client-order-id A-1\n"},
    {"settle", pk_cmd_settle, "settle a stuck order by hand (ops; never sent to a supplier)",
     "usage: perkctl settle ORDER_ID --outcome succeeded|failed --note TEXT\n"
     "                      [--charged AMOUNT] [--supplier-order-id ID]\n"
     "\n"
     "Settles a stuck order (POST /v1/orders/ID/settle) with the supplier's evidence:\n"
     "its open attempt becomes succeeded or failed and the order follows. Nothing is\n"
     "sent to any supplier; a failed settle fails the order (no fail-over). Only a\n"
     "stuck order can be settled: any other is refused naming its state. Who settled\n"
     "it (your token's client) and the note are kept and shown with the order.\n"
     "\n"
     "  --outcome X            succeeded or failed, as the supplier's records say\n"
     "  --note TEXT            the evidence (a ticket, the supplier's answer), required\n"
     "  --charged AMOUNT       what the supplier charged, in yuan (\"49.40\"); succeeded only\n"
     "  --supplier-order-id ID the supplier's order id, when it was not known yet\n"
     "\n"
     "example:\n"
     "  $ perkctl settle 12 --outcome succeeded --note \"supplier ticket 8812: credited\"\n"
     "  settled order 12: succeeded by ops\n"},
    {"lookup", pk_cmd_lookup, "customer-service lookup of a code or an order's codes",
     "usage: perkctl lookup (--code CODE | --code-stdin | --order ID | --client-order-id X)\n"
     "                      [--after N] [--limit N]\n"
     "\n"
     "What happened to this code, or to this order's codes? (POST /v1/codes/lookup).\n"
     "Prints per code: diagnosis, state, product, supplier, batch, order, issue time,\n"
     "expiry, the advice to give the customer and the product's redemption guide.\n"
     "\n"
     "  --code CODE            one code; it will show in the process list and your\n"
     "                         shell history: prefer --code-stdin\n"
     "  --code-stdin           read the code from the first line of standard input\n"
     "  --order ID             the codes of order ID, 100 at a time\n"
     "  --client-order-id X    the codes of your order X, 100 at a time\n"
     "  --after N              by order: after its first N codes (the last line of a\n"
     "                         page with more says which N is next)\n"
     "  --limit N              by order: at most N codes (1 to 100, default 100)\n"
     "\n"
     "The code travels in the request body, never in the URL. Needs a support or\n"
     "ops token; support tokens only see codes of their own orders.\n"
     "\n"
     "example:\n"
     "  $ printf '%s\\n' \"$CODE\" | perkctl lookup --code-stdin\n"
     "  diagnosis:     issued\n"
     "  ...\n"},
    {"events", pk_cmd_events, "print (or --follow) the event feed",
     "usage: perkctl events [--after SEQ] [--limit N] [--follow]\n"
     "\n"
     "Prints events (GET /v1/events), one per line: \"SEQ TIME TYPE key=value...\".\n"
     "Events never carry a code or an account. An ops token sees every event; a\n"
     "fulfill (mall) token the events of its own orders, without supplier or cost.\n"
     "When the server examined only part of the log, stderr says where to go on.\n"
     "\n"
     "  --after SEQ   only events after sequence number SEQ (default 0)\n"
     "  --limit N     at most N events per request\n"
     "  --follow      keep polling for new events, waiting 1 s after an empty poll,\n"
     "                until interrupted (Ctrl-C); then exits 0\n"
     "\n"
     "With --json: the response as received; with --json and --follow, one event\n"
     "object per line.\n"
     "\n"
     "example:\n"
     "  $ perkctl events --after 0 --limit 2\n"
     "  1  2026-11-24T19:42:00.123Z  product.updated  sku=iqiyi.gold.1m\n"
     "  2  2026-11-24T19:42:00.123Z  product.updated  sku=tencent.video.1m\n"},
    {"status", pk_cmd_status, "health, readiness, stock and suppliers at a glance",
     "usage: perkctl status\n"
     "\n"
     "Liveness (GET /v1/health) and readiness (GET /v1/ready); with a token, also\n"
     "stock per SKU and counters (GET /v1/stats) and suppliers (GET /v1/suppliers),\n"
     "which need an ops token.\n"
     "Exit 0 when the server is up, ready and answered everything; 1 otherwise.\n"
     "\n"
     "example:\n"
     "  $ perkctl status\n"
     "  server:        http://127.0.0.1:8080\n"
     "  health:        ok\n"
     "  ready:         ready\n"
     "  ...\n"},
    {"stats", pk_cmd_stats, "counters, stock per SKU and orders since a moment",
     "usage: perkctl stats [--since TIME]\n"
     "\n"
     "Codes, orders and the writer's counters and stock per SKU (GET /v1/stats); the\n"
     "orders created since TIME by state, the open ones and the top SKUs\n"
     "(GET /v1/stats/orders). Needs an ops token.\n"
     "\n"
     "  --since TIME   RFC 3339 (2026-12-06T00:00:00+08:00); default the start of\n"
     "                 today in UTC+08:00\n"
     "\n"
     "example:\n"
     "  $ perkctl stats\n"
     "  codes:         3000\n"
     "  orders:        2\n"
     "  ...\n"},
    {"reconcile", pk_cmd_reconcile, "match a supplier's statement against our attempts",
     "usage: perkctl reconcile SUPPLIER FILE --from DATE --to DATE\n"
     "       perkctl reconcile SUPPLIER --fetch --from DATE --to DATE\n"
     "\n"
     "Imports SUPPLIER's statement for the period (POST /v1/suppliers/ID/statements):\n"
     "a CSV read under the supplier's statement mapping in the configuration, or,\n"
     "with --fetch, the statement its plugin fetches. Each line is matched against\n"
     "our attempts at that supplier: matched, amount_mismatch, charged_not_succeeded,\n"
     "not_billed, duplicate or unknown_ref; the run is stored. The same statement\n"
     "again gives the same run and changes nothing. FILE \"-\" reads standard input.\n"
     "\n"
     "  --from DATE   the period's first day (YYYY-MM-DD, China time) or RFC 3339 time\n"
     "  --to DATE     the day (or time) after the period\n"
     "  --fetch       ask the supplier's plugin for the statement instead of a FILE\n"
     "\n"
     "A file with any bad line is refused whole: nothing is stored, each bad line is\n"
     "listed on stderr as \"line N, column C (field): reason\", and perkctl exits 1.\n"
     "Needs an ops token.\n"
     "\n"
     "example:\n"
     "  $ perkctl reconcile gw statement.csv --from 2026-12-01 --to 2026-12-02\n"
     "  reconciliation 1 of gw: 7 lines, 3 discrepancies\n"},
    {"suppliers", pk_cmd_suppliers, "list suppliers with their health",
     "usage: perkctl suppliers\n"
     "\n"
     "Lists the configured suppliers (GET /v1/suppliers). Needs an ops token.\n"
     "\n"
     "example:\n"
     "  $ perkctl suppliers\n"
     "  ID       PLUGIN   VERSION  ABI  ENABLED  PRIORITY  STATE  BREAKER  IN_FLIGHT  ERROR\n"
     "  sandbox  sandbox  1.2.0    1.3  true     10        ready  closed   0          -\n"},
    {"jobs", pk_cmd_jobs, "the scheduled jobs: last and next run; run one now",
     "usage: perkctl jobs\n"
     "       perkctl jobs run ID\n"
     "\n"
     "Lists the server's scheduled jobs (GET /v1/jobs): each with its period in\n"
     "seconds (0: on demand only), whether it runs now, its runs so far, its last run\n"
     "(start, ok, outcome) and its next run. `jobs run ID` asks for a run of ID now\n"
     "(POST /v1/jobs/ID/run): it runs as soon as it can, or once more right after the\n"
     "run in progress; the ask is audited (action jobs.run) and kept across a\n"
     "restart. Needs an ops token.\n"
     "\n"
     "example:\n"
     "  $ perkctl jobs\n"
     "  ID            EVERY_S  RUNNING  RUNS  LAST_RUN                  OK    NEXT_RUN  "
     "                OUTCOME\n"
     "  codes.expire  1        false    42    2026-12-06T08:00:41.000Z  true  "
     "2026-12-06T08:00:42.000Z  0 codes expired\n"
     "  $ perkctl jobs run codes.expire\n"
     "  queued codes.expire\n"},
    {"snapshot", pk_cmd_snapshot, "the server's snapshots of its store: list, take, pull",
     "usage: perkctl snapshot list\n"
     "       perkctl snapshot take\n"
     "       perkctl snapshot pull --out DIR\n"
     "\n"
     "list: the snapshots the server holds, newest first (GET /v1/snapshots): each a\n"
     "whole, compacted copy of its store with the replicated sequence it holds.\n"
     "take: a snapshot now (POST /v1/jobs/snapshots.take/run, audited as jobs.run;\n"
     "the leader's or a single node's), waits for the run and prints its outcome.\n"
     "pull: downloads the newest snapshot (GET /v1/snapshots/latest) into DIR/data.mdb\n"
     "(DIR made when absent, never over a store already there), written whole or not\n"
     "at all, and prints its repl_seq. A new node started on DIR with the cluster's\n"
     "key file applies the stream after that sequence. Needs an ops token.\n"
     "\n"
     "example:\n"
     "  $ perkctl snapshot take\n"
     "  snap-1796544000000-00000000000000000412.mdb: repl_seq 412, 1048576 bytes\n"
     "  $ perkctl snapshot list\n"
     "  FILE                                         REPL_SEQ  BYTES    TAKEN_AT\n"
     "  snap-1796544000000-00000000000000000412.mdb  412       1048576  "
     "2026-12-06T08:00:00.000Z\n"
     "  $ perkctl snapshot pull --out /srv/hub-d/data\n"
     "  /srv/hub-d/data/data.mdb: repl_seq 412, 1048576 bytes\n"},
    {"supplier", pk_cmd_supplier, "ask a supplier for its catalog or our balance",
     "usage: perkctl supplier catalog ID\n"
     "       perkctl supplier balance ID\n"
     "\n"
     "Asks the running supplier ID directly, through its plugin: catalog lists its\n"
     "products (GET /v1/suppliers/ID/catalog) beside our offers of each (flagged when\n"
     "its price is above our configured cost); balance is our prepaid balance with it\n"
     "(GET /v1/suppliers/ID/balance). A supplier whose plugin cannot do it answers\n"
     "unsupported. Needs an ops token.\n"
     "\n"
     "example:\n"
     "  $ perkctl supplier balance sandbox\n"
     "  balance with sandbox: 10000.00\n"},
    {"sync", pk_cmd_sync, "sync a supplier's catalog and stock now",
     "usage: perkctl sync ID [--what catalog|stock|all]\n"
     "\n"
     "Runs supplier ID's sync jobs now (POST /v1/suppliers/ID/sync): the catalog\n"
     "(every product it sells, its cost, stock and on-sale state, paged) and the stock\n"
     "check of each of our offers at it. Prints the jobs queued; their outcome shows in\n"
     "the supplier's \"sync\" (perkctl suppliers --json) and in GET /v1/jobs. What\n"
     "changed becomes events (offer.price_changed, offer.out_of_stock, ...). A\n"
     "supplier whose plugin can do neither answers unsupported. Needs an ops token.\n"
     "\n"
     "  --what catalog|stock|all   which sync (default all)\n"
     "\n"
     "example:\n"
     "  $ perkctl sync sandbox\n"
     "  queued sync.catalog/sandbox\n"
     "  queued sync.stock/sandbox\n"},
    {"pin", pk_cmd_pin, "pin a product listed or delisted, or unpin it",
     "usage: perkctl pin SKU listed|delisted|none\n"
     "\n"
     "Pins product SKU (POST /v1/products/SKU/pin): listed keeps it listed whatever\n"
     "sync finds upstream, delisted takes it off the catalog (orders of it are refused\n"
     "naming the SKU), none lets sync decide again. Audited. Needs an ops token.\n"
     "\n"
     "example:\n"
     "  $ perkctl pin iqiyi.gold.1m delisted\n"
     "  iqiyi.gold.1m: pin delisted, delisted by ops\n"},
    {"ledger", pk_cmd_ledger, "the money booked per order: supplier costs and sales",
     "usage: perkctl ledger [--from WHEN] [--to WHEN] [--supplier ID] [--client NAME]\n"
     "                      [--sku SKU] [--after SEQ] [--limit N] [--csv]\n"
     "\n"
     "Lists ledger entries in the order they were booked (GET /v1/ledger): what each\n"
     "supplier charged for an order, the client's price for it, corrections. Amounts\n"
     "are CNY; entries are never changed, a correction is a new entry.\n"
     "\n"
     "  --from WHEN / --to WHEN   a day (YYYY-MM-DD, the business day: reports.utc_offset)\n"
     "                            or a time (RFC 3339); --to's day is included\n"
     "  --supplier ID, --client NAME, --sku SKU   only those entries\n"
     "  --after SEQ   only entries after SEQ (the next page)\n"
     "  --limit N     at most N entries (JSON: 1000; CSV: 100000)\n"
     "  --csv         the CSV export, as the server writes it\n"
     "\n"
     "When there are more, the last line says where to continue: \"more: --after SEQ\".\n"
     "Needs an ops token.\n"
     "\n"
     "example:\n"
     "  $ perkctl ledger --client mall --limit 2\n"
     "  SEQ  AT                        ORDER  ATTEMPT  KIND           SUPPLIER  CLIENT  SKU        "
     "     AMOUNT  COMMAND\n"
     "  1    2026-12-06T16:02:11.120Z  1      1        supplier_cost  sandbox   mall    "
     "phone.topup.30  29.40   attempt\n"
     "  2    2026-12-06T16:02:11.120Z  1      0        sale           sandbox   mall    "
     "phone.topup.30  30.00   attempt\n"
     "  more: --after 2\n"},
    {"report", pk_cmd_report, "cost, revenue, margin and order counts per day or key",
     "usage: perkctl report --from DAY --to DAY [--by day|supplier|client|sku] [--csv]\n"
     "\n"
     "Totals of the days DAY..DAY (YYYY-MM-DD, both included, in the business time\n"
     "zone) from the daily aggregates (GET /v1/reports), one row per day (default),\n"
     "supplier, client or SKU, then the total. Orders count on the day they were\n"
     "created, by their outcome now; UNPRICED are succeeded orders whose product had\n"
     "no price (their sale is 0). Needs an ops token.\n"
     "\n"
     "example:\n"
     "  $ perkctl report --from 2026-12-01 --to 2026-12-31 --by supplier\n"
     "  SUPPLIER  REVENUE  COST    MARGIN  SUCCEEDED  FAILED  UNKNOWN  UNPRICED\n"
     "  sandbox   60.00    58.80   1.20    2          1       0        0\n"
     "  TOTAL     60.00    58.80   1.20    2          1       0        0\n"},
    {"discrepancies", pk_cmd_discrepancies,
     "list supplier truth that contradicts our records (open by default)",
     "usage: perkctl discrepancies [--status open|accepted|disputed|all] [--supplier ID]\n"
     "                             [--after ID] [--limit N]\n"
     "\n"
     "Lists discrepancies (GET /v1/discrepancies), oldest first: a late success after\n"
     "we failed an order, a failure after a success, another charge or delivered\n"
     "value. Needs an ops token.\n"
     "\n"
     "example:\n"
     "  $ perkctl discrepancies\n"
     "  ID  ORDER  ATTEMPT  SUPPLIER  SOURCE    OURS    THEIRS           STATUS\n"
     "  1   42     1        gateway   callback  failed  succeeded 49.00  open\n"},
    {"webhooks", pk_cmd_webhooks, "the mall's webhook endpoints: status, failures, replay",
     "usage: perkctl webhooks [status]\n"
     "       perkctl webhooks deliveries ID [--state pending|dead|delivered]\n"
     "                                      [--after SEQ] [--limit N]\n"
     "       perkctl webhooks failures ID\n"
     "       perkctl webhooks replay ID (--delivery DELIVERY | --from SEQ --to SEQ)\n"
     "       perkctl webhooks enable ID\n"
     "\n"
     "status: every endpoint with its state and counts (GET /v1/webhooks).\n"
     "deliveries: one endpoint's deliveries, oldest first. failures: the dead-lettered\n"
     "ones, then those still being retried after a failure. replay: send one delivery\n"
     "again, or every delivery of the events SEQ..SEQ (same delivery ids; audited).\n"
     "enable: deliver again to an endpoint that answered 410 (audited).\n"
     "Needs an ops token (a mall's token sees its own endpoints with status).\n"},
    {"discrepancy", pk_cmd_discrepancy, "show, accept or dispute one discrepancy",
     "usage: perkctl discrepancy show|accept|dispute ID [--note TEXT]\n"
     "\n"
     "show: GET /v1/discrepancies/ID. accept: take the supplier's truth; the attempt\n"
     "and the order are corrected (order.corrected, before and after kept). dispute:\n"
     "keep ours; --note is required. Both keep your client name and the note.\n"
     "Needs an ops token.\n"
     "\n"
     "example:\n"
     "  $ perkctl discrepancy dispute 1 --note \"not on the May statement\"\n"},
    {"alerts", pk_cmd_alerts, "list low-stock and balance alerts, or acknowledge one",
     "usage: perkctl alerts [--state open|acknowledged|all] [--after ID] [--limit N]\n"
     "       perkctl alerts ack ID [--note TEXT]\n"
     "\n"
     "Lists alerts (GET /v1/alerts), oldest first: stock.low and stock.out of a\n"
     "product with a low_stock rule, supplier.balance_low of a supplier with\n"
     "balance_below. Open ones by default (fired, not acknowledged, not cleared).\n"
     "ack: acknowledge one (POST /v1/alerts/ID/ack; audited, your client name and\n"
     "the note kept). Needs an ops token.\n"
     "\n"
     "example:\n"
     "  $ perkctl alerts\n"
     "  ID  KIND       SUBJECT        VALUE  THRESHOLD  STATE  FIRED_AT\n"
     "  3   stock.low  iqiyi.gold.1m  4      5          open   2026-12-07T03:10:00.000Z\n"
     "  $ perkctl alerts ack 3 --note \"reorder placed\"\n"
     "  alert 3 acknowledged\n"},
    {"reviews", pk_cmd_reviews, "list orders held for review, or release or block one",
     "usage: perkctl reviews [--after ID] [--limit N]\n"
     "       perkctl reviews release|block ID [--note TEXT]\n"
     "\n"
     "Lists the orders a risk rule held for review (GET /v1/reviews), oldest first,\n"
     "with the rule and when the review times out (risk.review_default then\n"
     "applies). release: fulfil it as a new order would be (stock, else a\n"
     "supplier); block: fail it (blocked_by_review). Both are audited, your client\n"
     "name and the note kept. Needs an ops token.\n"
     "\n"
     "example:\n"
     "  $ perkctl reviews\n"
     "  ORDER  CLIENT  CLIENT_ORDER_ID  SKU            QTY  RULE      HOLD_UNTIL\n"
     "  42     mall    A-1001           iqiyi.gold.1m  1    per-user  2026-12-07T04:10:00.000Z\n"
     "  $ perkctl reviews release 42 --note \"known customer\"\n"
     "  order 42 released: succeeded\n"},
    {"grants", pk_cmd_grants, "list grants, show one, or extend one's expiry",
     "usage: perkctl grants [--state active|claimed|expired] [--client NAME] [--after ID]\n"
     "                      [--limit N]\n"
     "       perkctl grants show ID\n"
     "       perkctl grants extend ID TIME\n"
     "\n"
     "Lists the grants (GET /v1/grants) in id order: benefits held for an end user\n"
     "until claimed, gifted on or expired; a mall token sees its own. show: one\n"
     "grant. extend: a new expiry (RFC 3339) for an active grant, audited\n"
     "(grant.extend); needs an ops token. No token of a grant is ever shown here.\n"
     "\n"
     "example:\n"
     "  $ perkctl grants --state active\n"
     "  ID  CLIENT  SKU            QTY  STATE   HOLDER    GIFTED  EXPIRES_AT\n"
     "  7   mall    iqiyi.gold.1m  1    active  em****01  0       2027-01-06T09:00:00.000Z\n"
     "  $ perkctl grants extend 7 2027-03-01T00:00:00+08:00\n"
     "  grant 7 now expires 2027-02-28T16:00:00.000Z\n"},
    {"risk", pk_cmd_risk, "risk rules and the block and allow lists",
     "usage: perkctl risk rules\n"
     "       perkctl risk rule ID | versions ID\n"
     "       perkctl risk set FILE|- [--version N]\n"
     "       perkctl risk remove ID [--version N]\n"
     "       perkctl risk lists [--list block|allow]\n"
     "       perkctl risk block|allow VARIABLE VALUE|- [--ttl SECONDS] [--note TEXT]\n"
     "       perkctl risk unlist block|allow VARIABLE KEY\n"
     "\n"
     "rules: the rules stored, enabled or not (GET /v1/risk/rules). rule: one rule's\n"
     "newest version; versions: all of them. set: create or replace the rule in FILE\n"
     "(JSON, docs/risk.md; - reads stdin); with --version, only if that is the version\n"
     "it replaces. remove: delete a rule (its versions stay). lists: the list entries,\n"
     "shown masked with their keys. block / allow: add VALUE of VARIABLE (user, ip,\n"
     "ip24, device, account, phone, client) to a list; - reads the value from stdin so\n"
     "it stays out of the shell's history; the server keeps only its keyed hash and a\n"
     "masked form. unlist: remove an entry by the key `lists` shows. Every change is\n"
     "in force for the next order, audited and evented. Needs an ops token.\n"
     "\n"
     "example:\n"
     "  $ perkctl risk set newuser.json\n"
     "  rule newuser.5 created (version 1)\n"
     "  $ echo 13800138000 | perkctl risk block phone - --ttl 86400 --note farm\n"
     "  block list: phone 138****8000 (key 5f0c9a8e3b1d2c47, expires 2026-12-08T...)\n"},
    {"replenishments", pk_cmd_replenishments, "list the purchases auto-replenishment made",
     "usage: perkctl replenishments [--sku SKU] [--state in_flight|succeeded|failed]\n"
     "                              [--after ID] [--limit N]\n"
     "\n"
     "Lists replenishments (GET /v1/replenishments), oldest first: what was bought\n"
     "for which product's stock, from which supplier at what unit cost, and how it\n"
     "ended (the batch its codes are in). Needs an ops token.\n"
     "\n"
     "example:\n"
     "  $ perkctl replenishments --sku iqiyi.gold.1m\n"
     "  ID  SKU            SUPPLIER  QUANTITY  UNIT_COST  STATE      ORDER  BATCH  STARTED\n"
     "  1   iqiyi.gold.1m  sandbox   20        28.00      succeeded  7      3      "
     "2026-12-07T03:10:00.000Z\n"},
    {"products", pk_cmd_products, "list the catalog with stock",
     "usage: perkctl products [--brand BRAND] [--tag TAG] [--category CATEGORY]\n"
     "\n"
     "Lists products with face value and available stock (GET /v1/products).\n"
     "\n"
     "  --brand BRAND        only this brand\n"
     "  --tag TAG            only products with this tag\n"
     "  --category CATEGORY  only this category\n"
     "\n"
     "example:\n"
     "  $ perkctl products --brand iqiyi\n"},
    {"audit", pk_cmd_audit, "the audit trail: who did which ops action, and what",
     "usage: perkctl audit [--from TIME] [--to TIME] [--client NAME] [--action ACTION]\n"
     "                     [--after ID] [--limit N]\n"
     "\n"
     "Prints audit records (GET /v1/audit), oldest first, one per line:\n"
     "\"ID TIME ACTION client=... peer=... request_id=... via=... what={...}\".\n"
     "Every import, batch void and config reload is there, written in the same\n"
     "commit as the change. Needs an ops token.\n"
     "\n"
     "  --from TIME      only records at or after TIME (RFC 3339, 2026-12-06T08:00:00Z)\n"
     "  --to TIME        only records at or before TIME\n"
     "  --client NAME    only actions of this API client\n"
     "  --action ACTION  only this action (batch.import, batch.void, config.reload)\n"
     "  --after ID       only records after id ID (default 0)\n"
     "  --limit N        at most N records, 1 to 1000 (default 100)\n"
     "\n"
     "With --json: the first response as received (its next_after and more say\n"
     "where the next page starts).\n"
     "\n"
     "example:\n"
     "  $ perkctl audit --action batch.void\n"
     "  2  2026-12-06T08:12:00.123Z  batch.void  client=ops peer=127.0.0.1 "
     "request_id=5f3c0a1e00000007 via=http what={\"batch_id\":1} ...\n"},
};

#define NCOMMANDS (sizeof commands / sizeof commands[0])

static const pk_cmd *find_command(const char *name)
{
    for (size_t i = 0; i < NCOMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static void print_global_usage(FILE *f)
{
    fputs(global_usage, f);
    for (size_t i = 0; i < NCOMMANDS; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fputs(global_usage_tail, f);
}

/* `perkctl help [COMMAND]`. */
static int run_help(int argc, char **argv)
{
    if (argc < 2) {
        print_global_usage(stdout);
        return PK_EXIT_OK;
    }
    const pk_cmd *cmd = find_command(argv[1]);
    if (!cmd)
        return pk_usage_error(NULL, "unknown command '%s'", argv[1]);
    return pk_help(cmd);
}

static const char *getenv_set(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

/* The base URL as it may be shown: without a "user:password@" part, which
 * would be a credential. Writes into buf. */
static const char *url_for_display(const char *url, char *buf, size_t len)
{
    const char *host = strstr(url, "://");
    host = host ? host + 3 : url;
    size_t authority = strcspn(host, "/?#");
    const char *at = memrchr(host, '@', authority);
    if (!at)
        snprintf(buf, len, "%s", url);
    else
        snprintf(buf, len, "%.*s%s", (int)(host - url), url, at + 1);
    return buf;
}

int main(int argc, char **argv)
{
    ph_json_alloc_install(); /* before any jansson call: answers hold codes */
    static const struct option opts[] = {
        {"url", required_argument, NULL, 'u'},     {"token", required_argument, NULL, 't'},
        {"timeout", required_argument, NULL, 'T'}, {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},          {"cacert", required_argument, NULL, 'A'},
        {"cert", required_argument, NULL, 'E'},    {"key", required_argument, NULL, 'K'},
        {"version", no_argument, NULL, 'V'},       {NULL, 0, NULL, 0},
    };
    const char *cacert = getenv_set("PERKHUB_CACERT"), *cert = getenv_set("PERKHUB_CERT");
    const char *key = getenv_set("PERKHUB_KEY");
    const char *url = getenv_set("PERKHUB_URL"), *token = getenv_set("PERKHUB_TOKEN");
    const char *timeout = NULL;
    int json = 0, version = 0, c;

    /* '+': stop at the command name; its options are the command's business. */
    while ((c = getopt_long(argc, argv, "+:h", opts, NULL)) != -1) {
        switch (c) {
        case 'u':
            url = optarg;
            break;
        case 't':
            token = *optarg ? optarg : NULL;
            break;
        case 'T':
            timeout = optarg;
            break;
        case 'j':
            json = 1;
            break;
        case 'A':
            cacert = optarg;
            break;
        case 'E':
            cert = optarg;
            break;
        case 'K':
            key = optarg;
            break;
        case 'h':
            print_global_usage(stdout);
            return PK_EXIT_OK;
        case 'V':
            version = 1;
            break;
        default:
            return pk_getopt_error(NULL, c, argv);
        }
    }
    if (version && optind < argc)
        return pk_usage_error(NULL, "--version takes no command (got '%s')", argv[optind]);
    if (optind >= argc && !version) {
        print_global_usage(stderr);
        return PK_EXIT_USAGE;
    }

    const char *name = version ? NULL : argv[optind];
    if (name && strcmp(name, "help") == 0)
        return run_help(argc - optind, argv + optind);
    const pk_cmd *cmd = name ? find_command(name) : NULL;
    if (name && !cmd)
        return pk_usage_error(NULL, "unknown command '%s'", name);

    if (!url)
        url = PK_DEFAULT_URL;
    char shown[512];
    url_for_display(url, shown, sizeof shown);
    if (strncasecmp(url, "http://", 7) != 0 && strncasecmp(url, "https://", 8) != 0)
        return pk_usage_error(NULL, "--url: expected http://HOST:PORT or https://..., got '%s'",
                              shown);
    long long timeout_s = 60;
    if (timeout && pk_parse_int(timeout, 0, 7 * 24 * 3600, &timeout_s) != 0)
        return pk_usage_error(NULL, "--timeout: expected whole seconds (0 = no limit), got '%s'",
                              timeout);
    if (!cert != !key)
        return pk_usage_error(NULL, "--cert and --key (or PERKHUB_CERT, PERKHUB_KEY) go together");
    /* A line break in the token would let it inject headers; say so without
     * showing it. */
    for (const char *p = token; p && *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            return pk_usage_error(NULL, "--token (or PERKHUB_TOKEN): contains a control character");

    /* The base URL without trailing slashes, so paths join cleanly. */
    char *base = strdup(url);
    if (!base) {
        fputs("perkctl: out of memory\n", stderr);
        return PK_EXIT_REFUSED;
    }
    for (size_t n = strlen(base); n > 0 && base[n - 1] == '/'; n--)
        base[n - 1] = '\0';
    url_for_display(base, shown, sizeof shown);

    pk_ctx ctx = {
        .http = {.base_url = base,
                 .token = token,
                 .timeout_s = (long)timeout_s,
                 .cacert = cacert,
                 .cert = cert,
                 .key = key},
        .url_shown = shown,
        .json = json,
    };
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fputs("perkctl: cannot initialise libcurl\n", stderr);
        free(base);
        return PK_EXIT_REFUSED;
    }
    /* The command re-initialises getopt (optind = 0) for its own options. */
    int rc = version ? pk_print_version(&ctx) : cmd->run(&ctx, cmd, argc - optind, argv + optind);
    curl_global_cleanup();
    free(base);

    /* A full disk or a closed pipe must not pass for success. */
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "perkctl: cannot write output: %s\n", strerror(errno));
        if (rc == PK_EXIT_OK)
            rc = PK_EXIT_REFUSED;
    }
    return rc;
}
