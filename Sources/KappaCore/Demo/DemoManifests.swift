/// The demo's manifests, built in so that `kappactl demo` runs from any directory. They are the
/// files `Manifests/btc-v1.json` and `Manifests/btc-v2.json` word for word (a test checks it).
public enum DemoManifests {
    public static let v1 = #"""
{
  "job": "btc",
  "version": 1,
  "source": {"topic": "bpi", "fields": {"currency": "TEXT", "ts": "BIGINT", "rate": "DOUBLE"}},
  "output": {
    "table": "btc_prices",
    "columns": {"currency": "TEXT", "minute": "INTEGER", "samples": "INTEGER", "avg_rate": "REAL"},
    "primaryKey": ["currency", "minute"]
  },
  "transform": {
    "sql": "INSERT INTO output(currency, minute, samples, avg_rate) SELECT currency, ts / 60000, count(*), avg(rate) FROM batch WHERE true GROUP BY 1, 2 ON CONFLICT(currency, minute) DO UPDATE SET samples = output.samples + excluded.samples, avg_rate = (output.avg_rate * output.samples + excluded.avg_rate * excluded.samples) / (output.samples + excluded.samples)"
  },
  "batch": 10000,
  "catchUp": {"maxLag": 30, "holdFor": "1s"},
  "promote": "manual",
  "retire": {"after": "1h"},
  "onBadRecord": "deadLetter"
}
"""#

    public static let v2 = #"""
{
  "job": "btc",
  "version": 2,
  "source": {"topic": "bpi", "fields": {"currency": "TEXT", "ts": "BIGINT", "rate": "DOUBLE"}},
  "output": {
    "table": "btc_prices",
    "columns": {"currency": "TEXT", "minute": "INTEGER", "samples": "INTEGER", "open": "REAL", "high": "REAL", "low": "REAL", "close": "REAL"},
    "primaryKey": ["currency", "minute"]
  },
  "transform": {
    "sql": "WITH t AS (SELECT currency, ts / 60000 AS minute, rate, \"offset\" AS o FROM batch), g AS (SELECT currency, minute, count(*) AS samples, max(rate) AS high, min(rate) AS low, min(o) AS first_o, max(o) AS last_o FROM t GROUP BY currency, minute) INSERT INTO output(currency, minute, samples, open, high, low, close) SELECT g.currency, g.minute, g.samples, f.rate, g.high, g.low, l.rate FROM g JOIN t f ON f.o = g.first_o JOIN t l ON l.o = g.last_o WHERE true ON CONFLICT(currency, minute) DO UPDATE SET samples = output.samples + excluded.samples, high = CASE WHEN excluded.high > output.high THEN excluded.high ELSE output.high END, low = CASE WHEN excluded.low < output.low THEN excluded.low ELSE output.low END, close = excluded.close"
  },
  "batch": 10000,
  "catchUp": {"maxLag": 30, "holdFor": "1s"},
  "promote": {
    "mode": "manual",
    "checks": ["(SELECT count(*) FROM new) >= (SELECT count(*) FROM old)"],
    "analysis": {
      "checks": ["(SELECT count(*) FROM new WHERE high < low OR open > high OR close < low) = 0", "(SELECT count(*) FROM errors) <= 10", "(SELECT max(records) FROM lag) <= 1000"],
      "interval": "1s", "bake": "5s", "failureLimit": 2
    }
  },
  "retire": {"after": "1h"},
  "onBadRecord": "deadLetter"
}
"""#
}
