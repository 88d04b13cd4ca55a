/// The store's schema (`Spec/POSTGRES.md` §2–§4): tables and the plpgsql functions that
/// decide claims, settle them, resolve and forget, and run the memo, each in one statement.
///
/// Every object lives in one schema (`PostgresStore.Configuration.schema`, a validated plain
/// identifier, so it is spliced into the SQL quoted). The version of what is created is
/// `PostgresSchema.version`, kept in `meta`; `PostgresStore` migrates older schemas and
/// refuses newer ones.
enum PostgresSchema {
    /// The schema version this build writes and reads. Version 2 adds the committing
    /// procedures (`createVersion2`), version 3 the batch of memo puts and unsorted answers
    /// (`createVersion3`), version 4 functions that act on no unreadable row and bound the
    /// counters at 2³² − 1 (`createVersion4`).
    static let version = 4

    /// The channel `pg_notify` signals settled keys on (payload: the key's bytes in hex).
    static func channel(_ schema: String) -> String { "\(schema)_changes" }

    /// The statements that create version 1 in an empty schema, in order (run in one
    /// transaction by the migration).
    static func createVersion1(_ schema: String) -> [String] {
        let s = "\"\(schema)\""
        let channel = channel(schema)
        // Rows of `entries` by status: 0 absent, 1 pending-unknown (an intent without an
        // outcome), 2 done. Scope of the latest intent: 0 forever, 1 while in flight, 2 window.
        // Times are the ledger's clock in milliseconds; lease times the database's clock.
        return [
            """
            CREATE TABLE \(s).meta (
                singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
                schema_version integer NOT NULL,
                ledger_id bytea NOT NULL CHECK (octet_length(ledger_id) = 16),
                generation_floor bigint NOT NULL DEFAULT 0,
                created timestamptz NOT NULL DEFAULT clock_timestamp()
            )
            """,
            "CREATE SEQUENCE \(s).lease_ids",
            """
            CREATE TABLE \(s).entries (
                key bytea PRIMARY KEY,
                status smallint NOT NULL CHECK (status IN (0, 1, 2)),
                attempt bigint NOT NULL CHECK (attempt >= 0),
                generation bigint NOT NULL CHECK (generation >= 0),
                fingerprint bytea NOT NULL,
                scope smallint NOT NULL,
                window_ms bigint NOT NULL,
                time_ms bigint NOT NULL,
                receipt bytea NOT NULL,
                lease_id bigint,
                lease_owner text,
                lease_expires timestamptz
            )
            """,
            "CREATE INDEX entries_pending ON \(s).entries (key) WHERE status = 1",
            """
            CREATE TABLE \(s).audit (
                id bigserial PRIMARY KEY,
                key bytea NOT NULL,
                act text NOT NULL,
                attempt bigint NOT NULL,
                outcome text,
                actor text,
                reason text NOT NULL,
                time_ms bigint NOT NULL,
                recorded timestamptz NOT NULL DEFAULT clock_timestamp()
            )
            """,
            // claim: one row per request, processed in key order (so two batches never lock
            // rows in opposite orders). outcome: 0 claimed (lease_id is the new fence), 1 done,
            // 2 pending-unknown, 3 fingerprint mismatch, 4 running (a live lease).
            claimFunction(s, create: "CREATE", readFloor: "SELECT m.generation_floor INTO v_floor FROM \(s).meta m FOR SHARE;"),
            // settle: complete (1), release (2) or abandon (3) a claim, accepted only from the
            // claim's lease (key, attempt and fence all current, the entry pending). ok false:
            // nothing was written, the row returned is the entry as it is (absent: no row).
            """
            CREATE FUNCTION \(s).settle(p_acts smallint[], p_keys bytea[], p_attempts bigint[], p_fences bigint[],
                                        p_receipts bytea[], p_times bigint[], p_reasons text[])
            RETURNS TABLE(idx bigint, ok boolean, status smallint, attempt bigint, generation bigint,
                          fingerprint bytea, time_ms bigint, receipt bytea)
            LANGUAGE plpgsql AS $$
            #variable_conflict use_column
            DECLARE
                r record;
                e \(s).entries%ROWTYPE;
            BEGIN
                FOR r IN SELECT u.a, u.k, u.at, u.f, u.rc, u.t, u.rs, u.i
                         FROM unnest(p_acts, p_keys, p_attempts, p_fences, p_receipts, p_times, p_reasons)
                              WITH ORDINALITY AS u(a, k, at, f, rc, t, rs, i)
                         ORDER BY u.k, u.i
                LOOP
                    idx := r.i;
                    SELECT * INTO e FROM \(s).entries x WHERE x.key = r.k FOR UPDATE;
                    IF NOT FOUND THEN
                        ok := false; status := NULL; attempt := NULL; generation := NULL; fingerprint := NULL;
                        time_ms := NULL; receipt := NULL;
                        RETURN NEXT;
                        CONTINUE;
                    END IF;
                    ok := e.status = 1 AND e.attempt = r.at AND e.lease_id = r.f;
                    IF ok THEN
                        IF r.a = 1 THEN
                            UPDATE \(s).entries x SET status = 2, receipt = r.rc, time_ms = r.t,
                                   lease_id = NULL, lease_owner = NULL, lease_expires = NULL
                             WHERE x.key = r.k RETURNING x.* INTO e;
                        ELSIF r.a = 2 THEN
                            UPDATE \(s).entries x SET status = 0, fingerprint = decode(repeat('00', 32), 'hex'),
                                   receipt = '\\x', time_ms = r.t, lease_id = NULL, lease_owner = NULL, lease_expires = NULL
                             WHERE x.key = r.k RETURNING x.* INTO e;
                            INSERT INTO \(s).audit (key, act, attempt, reason, time_ms) VALUES (r.k, 'release', r.at, r.rs, r.t);
                        ELSE
                            UPDATE \(s).entries x SET lease_id = NULL, lease_owner = NULL, lease_expires = NULL
                             WHERE x.key = r.k RETURNING x.* INTO e;
                        END IF;
                        PERFORM pg_notify('\(channel)', encode(r.k, 'hex'));
                    END IF;
                    status := e.status; attempt := e.attempt; generation := e.generation; fingerprint := e.fingerprint;
                    time_ms := e.time_ms; receipt := e.receipt;
                    RETURN NEXT;
                END LOOP;
            END
            $$
            """,
            // renew: extends the leases of live claims (key, fence), in key order.
            """
            CREATE FUNCTION \(s).renew(p_keys bytea[], p_fences bigint[], p_lease_ms bigint)
            RETURNS bigint LANGUAGE plpgsql AS $$
            #variable_conflict use_column
            DECLARE
                r record;
                renewed bigint := 0;
            BEGIN
                FOR r IN SELECT u.k, u.f FROM unnest(p_keys, p_fences) AS u(k, f) ORDER BY u.k LOOP
                    UPDATE \(s).entries x SET lease_expires = clock_timestamp() + p_lease_ms * interval '1 millisecond'
                     WHERE x.key = r.k AND x.lease_id = r.f AND x.status = 1;
                    IF FOUND THEN renewed := renewed + 1; END IF;
                END LOOP;
                RETURN renewed;
            END
            $$
            """,
            // compact: retention (`Spec/POSTGRES.md` §3.6, ARCHITECTURE §2): deletes the entries
            // that block nothing at p_now and raises the generation floor past them, in one
            // transaction holding the meta row, so no claim reads the floor in between.
            compactFunction(s, create: "CREATE", lockFloor: "PERFORM 1 FROM \(s).meta m FOR UPDATE;"),
            // resolve (p_done: to done with p_receipt, else to absent) or forget (p_forget), an
            // audited act. code: 0 done, 1 not in the expected state (or no such key),
            // 2 a live lease holds the key, 3 another attempt than expected.
            operateFunction(s, channel: channel, create: "CREATE", bounded: false),
            // The memo (`Spec/POSTGRES.md` §4): each run's latest generation (handed out or
            // written), each generation's end, the values. Generation numbers come from one
            // sequence, so none is used twice in the store.
            "CREATE SEQUENCE \(s).memo_generation_numbers",
            """
            CREATE TABLE \(s).memo_runs (
                namespace bytea NOT NULL,
                run bytea NOT NULL,
                latest bigint NOT NULL,
                PRIMARY KEY (namespace, run)
            )
            """,
            """
            CREATE TABLE \(s).memo_generations (
                namespace bytea NOT NULL,
                run bytea NOT NULL,
                generation bigint NOT NULL,
                status smallint,
                end_ms bigint,
                PRIMARY KEY (namespace, run, generation)
            )
            """,
            """
            CREATE TABLE \(s).memo_values (
                namespace bytea NOT NULL,
                run bytea NOT NULL,
                generation bigint NOT NULL,
                step bytea NOT NULL,
                name bytea NOT NULL,
                input_digest bytea,
                time_ms bigint NOT NULL,
                value bytea NOT NULL,
                PRIMARY KEY (namespace, run, generation, step, name),
                FOREIGN KEY (namespace, run, generation) REFERENCES \(s).memo_generations ON DELETE CASCADE
            )
            """,
            // The generation a memo of a run reads and writes now: the latest unless it ended
            // (or was swept), else a new one.
            """
            CREATE FUNCTION \(s).memo_generation(p_namespace bytea, p_run bytea) RETURNS bigint
            LANGUAGE plpgsql AS $$
            #variable_conflict use_column
            DECLARE
                current bigint;
                ended boolean;
            BEGIN
                INSERT INTO \(s).memo_runs (namespace, run, latest)
                VALUES (p_namespace, p_run, nextval('\(s).memo_generation_numbers'))
                ON CONFLICT (namespace, run) DO NOTHING
                RETURNING latest INTO current;
                IF FOUND THEN RETURN current; END IF;
                SELECT m.latest INTO current FROM \(s).memo_runs m
                 WHERE m.namespace = p_namespace AND m.run = p_run FOR UPDATE;
                SELECT g.status IS NOT NULL INTO ended FROM \(s).memo_generations g
                 WHERE g.namespace = p_namespace AND g.run = p_run AND g.generation = current;
                IF ended IS NOT TRUE THEN RETURN current; END IF;
                current := nextval('\(s).memo_generation_numbers');
                UPDATE \(s).memo_runs m SET latest = current WHERE m.namespace = p_namespace AND m.run = p_run;
                RETURN current;
            END
            $$
            """,
            // A put: refused (false, nothing written) unless the generation is its run's
            // latest and has not ended.
            """
            CREATE FUNCTION \(s).memo_put(p_namespace bytea, p_run bytea, p_generation bigint, p_step bytea, p_name bytea,
                                          p_digest bytea, p_time bigint, p_value bytea) RETURNS boolean
            LANGUAGE plpgsql AS $$
            #variable_conflict use_column
            DECLARE
                current bigint;
                ended boolean;
            BEGIN
                SELECT m.latest INTO current FROM \(s).memo_runs m
                 WHERE m.namespace = p_namespace AND m.run = p_run FOR SHARE;
                IF current IS DISTINCT FROM p_generation THEN RETURN false; END IF;
                INSERT INTO \(s).memo_generations (namespace, run, generation) VALUES (p_namespace, p_run, p_generation)
                ON CONFLICT DO NOTHING;
                SELECT g.status IS NOT NULL INTO ended FROM \(s).memo_generations g
                 WHERE g.namespace = p_namespace AND g.run = p_run AND g.generation = p_generation FOR SHARE;
                IF ended THEN RETURN false; END IF;
                INSERT INTO \(s).memo_values AS v (namespace, run, generation, step, name, input_digest, time_ms, value)
                VALUES (p_namespace, p_run, p_generation, p_step, p_name, p_digest, p_time, p_value)
                ON CONFLICT (namespace, run, generation, step, name)
                DO UPDATE SET input_digest = excluded.input_digest, time_ms = excluded.time_ms, value = excluded.value;
                RETURN true;
            END
            $$
            """,
            // Ends the run's latest generation (a new one if it has none); an ended one is
            // returned as it ended. Returns the generation as `runs` lists it.
            """
            CREATE FUNCTION \(s).finish_run(p_namespace bytea, p_run bytea, p_status smallint, p_time bigint)
            RETURNS TABLE(generation bigint, status smallint, end_ms bigint, entries bigint, value_bytes bigint)
            LANGUAGE plpgsql AS $$
            #variable_conflict use_column
            DECLARE
                current bigint;
            BEGIN
                INSERT INTO \(s).memo_runs (namespace, run, latest)
                VALUES (p_namespace, p_run, nextval('\(s).memo_generation_numbers'))
                ON CONFLICT (namespace, run) DO NOTHING;
                SELECT m.latest INTO current FROM \(s).memo_runs m
                 WHERE m.namespace = p_namespace AND m.run = p_run FOR UPDATE;
                INSERT INTO \(s).memo_generations AS g (namespace, run, generation, status, end_ms)
                VALUES (p_namespace, p_run, current, p_status, p_time)
                ON CONFLICT ON CONSTRAINT memo_generations_pkey
                DO UPDATE SET status = p_status, end_ms = p_time WHERE g.status IS NULL;
                RETURN QUERY
                SELECT g.generation, g.status, g.end_ms, count(v.name), coalesce(sum(octet_length(v.value)), 0)::bigint
                  FROM \(s).memo_generations g
                  LEFT JOIN \(s).memo_values v
                    ON v.namespace = g.namespace AND v.run = g.run AND v.generation = g.generation
                 WHERE g.namespace = p_namespace AND g.run = p_run AND g.generation = current
                 GROUP BY g.generation, g.status, g.end_ms;
            END
            $$
            """,
            // The sweep: one sweeper at a time across processes (an advisory lock for the
            // transaction); removes every ended generation whose window (per status, NULL:
            // kept forever) has passed at p_now, never one that ended after p_now.
            """
            CREATE FUNCTION \(s).memo_sweep(p_now bigint, p_succeeded bigint, p_failed bigint, p_cancelled bigint)
            RETURNS TABLE(namespace bytea, run bytea, generation bigint, entries bigint)
            LANGUAGE plpgsql AS $$
            #variable_conflict use_column
            BEGIN
                PERFORM pg_advisory_xact_lock(hashtext('\(schema).memo_sweep'));
                RETURN QUERY
                WITH due AS (
                    DELETE FROM \(s).memo_generations g
                     WHERE g.status IS NOT NULL AND g.end_ms <= p_now
                       AND p_now::numeric - g.end_ms::numeric >=
                           (CASE g.status WHEN 1 THEN p_succeeded WHEN 2 THEN p_failed ELSE p_cancelled END)::numeric
                    RETURNING g.namespace, g.run, g.generation
                ), counted AS (
                    SELECT d.namespace, d.run, d.generation,
                           (SELECT count(*) FROM \(s).memo_values v
                             WHERE v.namespace = d.namespace AND v.run = d.run AND v.generation = d.generation) AS entries
                      FROM due d
                ), cleared AS (
                    DELETE FROM \(s).memo_runs m USING due d
                     WHERE m.namespace = d.namespace AND m.run = d.run AND m.latest = d.generation
                )
                SELECT c.namespace, c.run, c.generation, c.entries FROM counted c;
            END
            $$
            """,
        ]
    }

    /// The claim function (`Spec/POSTGRES.md` §3.1), with how it holds the generation floor
    /// until it commits: version 1 share-locked the `meta` row (`FOR SHARE`, a row lock that
    /// every batch writes and concurrent batches turn into a multixact); version 2 takes a
    /// shared advisory lock (`floorLockKey`) instead, which writes nothing. Either way a
    /// compaction raising the floor waits for the batches holding it, and a batch waits for a
    /// compaction in progress and then reads the raised floor (READ COMMITTED: each statement
    /// sees what committed before it started).
    ///
    /// Version 4 (`bounded`) decides nothing on a row it cannot read (`unreadable`: outcome 5,
    /// the row returned as it is, nothing written) and grants no attempt or generation past
    /// 2³² − 1 (outcome 6: the attempt, 7: the generation; nothing written), as the file store
    /// (`FORMAT.md` §9.1): an absent row at the last generation is refused too (after a release
    /// its token may be used again, after a forget written by hand it must not, and the row does
    /// not say which), and a key without a row is not inserted while the floor is outside
    /// 0…2³² − 1 (7 above it, 5 below 0).
    static func claimFunction(_ s: String, create: String, readFloor: String, bounded: Bool = false) -> String {
        let max = counterMax
        /// A grant of `attempt` at `generation`; bounded, the counters are checked first
        /// (generation, then attempt, as the file store).
        func grant(_ attempt: String, _ generation: String, _ indent: String, generationLimit: String? = nil) -> String {
            let assign = "grant_attempt := \(attempt); grant_generation := \(generation);"
            guard bounded else { return indent + assign }
            return """
            \(indent)IF \(generationLimit ?? "\(generation) > \(max)") THEN
            \(indent)    outcome := 7;
            \(indent)ELSIF \(attempt) > \(max) THEN
            \(indent)    outcome := 6;
            \(indent)ELSE
            \(indent)    \(assign)
            \(indent)END IF;
            """
        }
        let declare = bounded ? "\n    v_floor_ok boolean;\n    inserted boolean;" : ""
        let floorChecked = bounded ? "\n    v_floor_ok := v_floor BETWEEN 0 AND \(max);" : ""
        let insert = """
                INSERT INTO \(s).entries AS x (key, status, attempt, generation, fingerprint, scope, window_ms,
                                               time_ms, receipt, lease_id, lease_owner, lease_expires)
                VALUES (r.k, 1, 1, v_floor, r.f, r.s, r.w, r.t, '\\x', nextval('\(s).lease_ids'), p_owner,
                        clock_timestamp() + p_lease_ms * interval '1 millisecond')
                ON CONFLICT (key) DO NOTHING
                RETURNING x.lease_id INTO lease_id;
        """
        let inserting = bounded ? """
                inserted := false;
                IF v_floor_ok THEN
            \(insert)
                    inserted := FOUND;
                END IF;
                IF inserted THEN
        """ : """
        \(insert)
                IF FOUND THEN
        """
        let noRow = bounded ? """

                IF NOT FOUND THEN
                    -- No row, and a floor no key may start at: nothing inserted (status -1: no row).
                    -- (In range, the row the insert found was deleted since: running, claim again.)
                    outcome := CASE WHEN v_floor < 0 THEN 5 WHEN v_floor > \(max) THEN 7 ELSE 4 END;
                    status := CASE WHEN v_floor_ok THEN 0 ELSE -1 END; attempt := 0;
                    generation := v_floor; fingerprint := r.f; time_ms := r.t; receipt := '\\x'; lease_id := NULL;
                    RETURN NEXT;
                    CONTINUE;
                END IF;
        """ : ""
        let firstRule = bounded ? """
                IF \(unreadable("e")) THEN
                    -- A row OnceLedger never writes: nothing is decided on it (§2).
                    outcome := 5;
                ELSIF e.lease_id IS NOT NULL AND e.lease_expires > clock_timestamp() THEN
        """ : """
                IF e.lease_id IS NOT NULL AND e.lease_expires > clock_timestamp() THEN
        """
        return """
        \(create) FUNCTION \(s).claim(p_keys bytea[], p_fingerprints bytea[], p_scopes smallint[], p_windows bigint[],
                                   p_retry boolean[], p_times bigint[], p_owner text, p_lease_ms bigint)
        RETURNS TABLE(idx bigint, outcome smallint, status smallint, attempt bigint, generation bigint,
                      fingerprint bytea, time_ms bigint, receipt bytea, lease_id bigint)
        LANGUAGE plpgsql AS $$
        #variable_conflict use_column
        DECLARE
            r record;
            e \(s).entries%ROWTYPE;
            expired boolean;
            grant_attempt bigint;
            grant_generation bigint;
            v_floor bigint;\(declare)
        BEGIN
            -- The generation floor a key without an entry starts at, held until the batch
            -- commits, so a compaction raising it waits for the batch, and the batch waits
            -- for a compaction in progress and then reads the raised floor.
            \(readFloor)\(floorChecked)
            FOR r IN SELECT u.k, u.f, u.s, u.w, u.rt, u.t, u.i
                     FROM unnest(p_keys, p_fingerprints, p_scopes, p_windows, p_retry, p_times)
                          WITH ORDINALITY AS u(k, f, s, w, rt, t, i)
                     ORDER BY u.k, u.i
            LOOP
                idx := r.i;
        \(inserting)
                    outcome := 0; status := 1; attempt := 1; generation := v_floor; fingerprint := r.f;
                    time_ms := r.t; receipt := '\\x';
                    RETURN NEXT;
                    CONTINUE;
                END IF;
                SELECT * INTO e FROM \(s).entries x WHERE x.key = r.k FOR UPDATE;\(noRow)
                grant_attempt := NULL;
        \(firstRule)
                    outcome := CASE WHEN e.fingerprint <> r.f THEN 3 ELSE 4 END;
                ELSIF e.status = 0 THEN
        \(grant("e.attempt + 1", "e.generation", "            ", generationLimit: "e.generation >= \(max)"))
                ELSIF e.fingerprint <> r.f THEN
                    outcome := 3;
                ELSIF e.status = 2 THEN
                    expired := CASE r.s WHEN 0 THEN false WHEN 1 THEN true
                               ELSE r.t::numeric >= e.time_ms::numeric + r.w::numeric END;
                    IF expired THEN
        \(grant("e.attempt + 1", "e.generation + 1", "                "))
                    ELSE
                        outcome := 1;
                    END IF;
                ELSIF r.rt THEN
        \(grant("e.attempt + 1", "e.generation", "            "))
                ELSE
                    outcome := 2;
                END IF;
                IF grant_attempt IS NOT NULL THEN
                    UPDATE \(s).entries x
                       SET status = 1, attempt = grant_attempt, generation = grant_generation, fingerprint = r.f,
                           scope = r.s, window_ms = r.w, time_ms = r.t, receipt = '\\x',
                           lease_id = nextval('\(s).lease_ids'), lease_owner = p_owner,
                           lease_expires = clock_timestamp() + p_lease_ms * interval '1 millisecond'
                     WHERE x.key = r.k
                    RETURNING x.lease_id INTO lease_id;
                    outcome := 0; status := 1; attempt := grant_attempt; generation := grant_generation;
                    fingerprint := r.f; time_ms := r.t; receipt := '\\x';
                ELSE
                    status := CASE WHEN outcome IN (3, 4) AND e.lease_id IS NOT NULL
                                   AND e.lease_expires > clock_timestamp() THEN 1 ELSE e.status END;
                    attempt := e.attempt; generation := e.generation; fingerprint := e.fingerprint;
                    time_ms := e.time_ms; receipt := CASE WHEN outcome = 1 OR e.status = 2 THEN e.receipt ELSE '\\x' END;
                    lease_id := NULL;
                END IF;
                RETURN NEXT;
            END LOOP;
        END
        $$
        """
    }

    /// `operate` (§3.3): resolve (p_done: to done with p_receipt, else to absent) or forget
    /// (p_forget), an audited act. code: 0 done, 1 not in the expected state (or no such key),
    /// 2 a live lease holds the key, 3 another attempt than expected. Version 4 (`bounded`): 4 the
    /// row holds values OnceLedger never writes (`unreadable`), checked first; 5 a forget at
    /// generation 2³² − 1, which has no next one (`FORMAT.md` §9.1). Refused acts write nothing.
    static func operateFunction(_ s: String, channel: String, create: String, bounded: Bool) -> String {
        let firstRule = bounded ? """
                        IF \(unreadable("e")) THEN
                            code := 4;
                        ELSIF e.lease_id IS NOT NULL AND e.lease_expires > clock_timestamp() THEN
            """ : """
                        IF e.lease_id IS NOT NULL AND e.lease_expires > clock_timestamp() THEN
            """
        let lastGeneration = bounded ? """
                        ELSIF p_forget AND e.generation >= \(counterMax) THEN
                            code := 5;

            """ : ""
        return """
            \(create) FUNCTION \(s).operate(p_key bytea, p_forget boolean, p_expected smallint, p_expected_attempt bigint,
                                         p_done boolean, p_receipt bytea, p_time bigint, p_actor text, p_reason text)
            RETURNS TABLE(code smallint, status smallint, attempt bigint, generation bigint, fingerprint bytea,
                          time_ms bigint, receipt bytea)
            LANGUAGE plpgsql AS $$
            #variable_conflict use_column
            DECLARE
                e \(s).entries%ROWTYPE;
            BEGIN
                SELECT * INTO e FROM \(s).entries x WHERE x.key = p_key FOR UPDATE;
                IF NOT FOUND THEN
                    code := 1;
                    RETURN NEXT;
                    RETURN;
                END IF;
            \(firstRule)
                    code := 2;
                ELSIF e.status <> p_expected THEN
                    code := 1;
                ELSIF p_expected_attempt IS NOT NULL AND e.attempt <> p_expected_attempt THEN
                    code := 3;
            \(lastGeneration)    ELSE
                    code := 0;
                    IF p_forget THEN
                        UPDATE \(s).entries x SET status = 0, generation = x.generation + 1,
                               fingerprint = decode(repeat('00', 32), 'hex'), receipt = '\\x', time_ms = p_time,
                               lease_id = NULL, lease_owner = NULL, lease_expires = NULL
                         WHERE x.key = p_key RETURNING x.* INTO e;
                    ELSIF p_done THEN
                        UPDATE \(s).entries x SET status = 2, receipt = p_receipt, time_ms = p_time,
                               lease_id = NULL, lease_owner = NULL, lease_expires = NULL
                         WHERE x.key = p_key RETURNING x.* INTO e;
                    ELSE
                        UPDATE \(s).entries x SET status = 0, fingerprint = decode(repeat('00', 32), 'hex'),
                               receipt = '\\x', time_ms = p_time, lease_id = NULL, lease_owner = NULL, lease_expires = NULL
                         WHERE x.key = p_key RETURNING x.* INTO e;
                    END IF;
                    INSERT INTO \(s).audit (key, act, attempt, outcome, actor, reason, time_ms)
                    VALUES (p_key, CASE WHEN p_forget THEN 'forget' ELSE 'resolve' END, e.attempt,
                            CASE WHEN p_forget THEN NULL WHEN p_done THEN 'done' ELSE 'absent' END, p_actor, p_reason, p_time);
                    PERFORM pg_notify('\(channel)', encode(p_key, 'hex'));
                END IF;
                status := e.status; attempt := e.attempt; generation := e.generation; fingerprint := e.fingerprint;
                time_ms := e.time_ms; receipt := e.receipt;
                RETURN NEXT;
            END
            $$
            """
    }

    /// SQL: the key of a memo value within its run generation (version 4), from its step and
    /// name (length-prefixed, so no two pairs concatenate alike): a SHA-256, 32 bytes in the
    /// primary key however long the names are.
    static func memoKeyDigest(_ step: String, _ name: String) -> String {
        "sha256(int4send(octet_length(\(step))) || \(step) || \(name))"
    }

    /// The largest attempt and generation (`FORMAT.md` §9.1: 32-bit counters that never wrap).
    static let counterMax = "4294967295"

    /// SQL, true when the `entries` row `e` holds a status, attempt, generation or time
    /// OnceLedger never writes: what `PostgresStore.entryInfo` reads as `.corruptRecord`.
    /// Version 4's functions decide nothing on such a row and change nothing of it (§2).
    static func unreadable(_ e: String) -> String {
        "(\(e).status NOT IN (0, 1, 2) OR \(e).attempt NOT BETWEEN 0 AND \(counterMax)"
            + " OR \(e).generation NOT BETWEEN 0 AND \(counterMax) OR \(e).time_ms < 0)"
    }

    /// The compaction function (§3.6), with how it excludes claim batches while it raises the
    /// floor (see `claimFunction`).
    ///
    /// Version 4 (`readableOnly`) keeps a row it cannot read (`unreadable`), and so never
    /// raises the floor past a generation OnceLedger did not write; and it drops the done
    /// `once` entries of the journal effects of run generations the memo no longer holds
    /// (`sweptJournalEffects`).
    static func compactFunction(_ s: String, create: String, lockFloor: String, readableOnly: Bool = false) -> String {
        let readable = readableOnly ? "\n           AND NOT \(unreadable("x"))" : ""
        let journal = readableOnly ? sweptJournalEffects(s) + " " : ""
        let journalDeclare = readableOnly ? "\n    v_handed_out bigint;" : ""
        let journalRead = readableOnly ? """

            -- The highest memo generation handed out (0: none yet). Read before the memo tables,
            -- so every generation up to it that is still held shows in them below.
            SELECT CASE WHEN q.is_called THEN q.last_value ELSE 0 END INTO v_handed_out
              FROM \(s).memo_generation_numbers q;
        """ : ""
        let journalDrop = readableOnly ? "\n                OR (x.status = 2 AND x.key IN (SELECT j.key FROM swept j))" : ""
        return """
        \(create) FUNCTION \(s).compact(p_now bigint) RETURNS bigint
        LANGUAGE plpgsql AS $$
        #variable_conflict use_column
        DECLARE
            dropped_max bigint;
            dropped bigint;\(journalDeclare)
        BEGIN
            \(lockFloor)\(journalRead)
            WITH \(journal)gone AS (
                DELETE FROM \(s).entries x
                 WHERE (x.lease_id IS NULL OR x.lease_expires <= clock_timestamp())
                   AND x.generation < 4294967295\(readable)
                   AND (x.status = 0
                        OR (x.status = 2 AND x.scope = 1)
                        OR (x.status = 2 AND x.scope = 2
                            AND x.time_ms::numeric + x.window_ms::numeric <= p_now::numeric)\(journalDrop))
                RETURNING x.generation
            )
            SELECT max(g.generation), count(*) INTO dropped_max, dropped FROM gone g;
            IF dropped_max IS NOT NULL THEN
                UPDATE \(s).meta m SET generation_floor = greatest(m.generation_floor, dropped_max + 1);
            END IF;
            RETURN dropped;
        END
        $$
        """
    }

    /// The common table expression `swept` of version 4's compaction (§3.6): the keys of done
    /// entries of journal effects (`onceledger.journal/g<N>/…`, `FORMAT.md` §10.3) whose run
    /// generation N the memo no longer holds — N at most the highest generation handed out
    /// (`v_handed_out`), and no run generation N in `memo_generations` nor as a run's latest in
    /// `memo_runs` (a generation handed out that nothing was written to yet is held there). Memo
    /// generation numbers are never handed out twice (one sequence), so no later run computes
    /// such a key: the entry blocks nothing and grows the table for ever otherwise.
    ///
    /// The key is bytes: the prefix is a range of the primary key, and N is read from the
    /// key's `escape` encoding (never fails, whatever the bytes; digits and `/` stay as they
    /// are) as canonical decimal digits then `/`. Anything else under the prefix (`g12x/`, `g/`,
    /// `g012/`, a number past 2⁶³ − 1 or past the highest handed out) is no generation: kept.
    static func sweptJournalEffects(_ s: String) -> String {
        """
        journal AS (
                SELECT x.key, CASE WHEN d.n BETWEEN 1 AND v_handed_out THEN d.n::bigint END AS n
                  FROM \(s).entries x,
                       LATERAL (SELECT substring(encode(x.key, 'escape') FROM '^onceledger\\.journal/g([1-9][0-9]*)/')::numeric AS n) d
                 WHERE x.key >= 'onceledger.journal/g'::bytea AND x.key < 'onceledger.journal/h'::bytea
                   AND x.status = 2
            ), swept AS (
                SELECT j.key FROM journal j
                 WHERE j.n IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM \(s).memo_generations g WHERE g.generation = j.n)
                   AND NOT EXISTS (SELECT 1 FROM \(s).memo_runs m WHERE m.latest = j.n)
            ),
        """
    }

    /// The advisory lock key of the generation floor of `schema` (one per schema).
    static func floorLockKey(_ schema: String) -> String { "hashtext('\(schema).generation_floor')" }

    /// How the claim function (version 2 on) holds and reads the floor: the floor's advisory
    /// lock shared, then the floor.
    static func claimReadsFloor(_ schema: String) -> String {
        "PERFORM pg_advisory_xact_lock_shared(\(floorLockKey(schema))); SELECT m.generation_floor INTO v_floor FROM \"\(schema)\".meta m;"
    }

    /// How compaction (version 2 on) holds the floor: the advisory lock exclusively and the
    /// `meta` row; it also clears the waits a process left when it died waiting (they only cost
    /// a signal per settle of their key).
    static func compactLocksFloor(_ schema: String) -> String {
        "PERFORM pg_advisory_xact_lock(\(floorLockKey(schema))); PERFORM 1 FROM \"\(schema)\".meta m FOR UPDATE; "
            + "DELETE FROM \"\(schema)\".waits w WHERE w.since < clock_timestamp() - interval '1 day';"
    }

    enum CommitProcedure { case claim, settle }

    /// `claim_commit` or `settle_commit` (§3): the writing function, `COMMIT`, then the answer
    /// as one array per column. Version 2 sorted each column by the request's position
    /// (`answersInOrder`), one sort per column and batch; the store places each answer by its
    /// position (`o_idx`) anyway, and the columns of one aggregate query are aligned, so
    /// version 3 leaves them in the order the function produced them (about a tenth more
    /// batches per second of the server's CPU, measured with `pgbench`).
    static func commitProcedure(_ which: CommitProcedure, _ s: String, create: String, answersInOrder: Bool) -> String {
        let order = answersInOrder ? " ORDER BY c.idx" : ""
        switch which {
        case .claim:
            return """
            \(create) PROCEDURE \(s).claim_commit(p_keys bytea[], p_fingerprints bytea[], p_scopes smallint[], p_windows bigint[],
                                                p_retry boolean[], p_times bigint[], p_owner text, p_lease_ms bigint,
                                                INOUT o_idx bigint[] DEFAULT NULL, INOUT o_outcome smallint[] DEFAULT NULL,
                                                INOUT o_status smallint[] DEFAULT NULL, INOUT o_attempt bigint[] DEFAULT NULL,
                                                INOUT o_generation bigint[] DEFAULT NULL, INOUT o_fingerprint bytea[] DEFAULT NULL,
                                                INOUT o_time bigint[] DEFAULT NULL, INOUT o_receipt bytea[] DEFAULT NULL,
                                                INOUT o_lease bigint[] DEFAULT NULL)
            LANGUAGE plpgsql AS $$
            BEGIN
                SELECT coalesce(array_agg(c.idx\(order)), '{}'), coalesce(array_agg(c.outcome\(order)), '{}'),
                       coalesce(array_agg(c.status\(order)), '{}'), coalesce(array_agg(c.attempt\(order)), '{}'),
                       coalesce(array_agg(c.generation\(order)), '{}'),
                       coalesce(array_agg(c.fingerprint\(order)), '{}'), coalesce(array_agg(c.time_ms\(order)), '{}'),
                       coalesce(array_agg(c.receipt\(order)), '{}'),
                       coalesce(array_agg(coalesce(c.lease_id, 0)\(order)), '{}')
                  INTO o_idx, o_outcome, o_status, o_attempt, o_generation, o_fingerprint, o_time, o_receipt, o_lease
                  FROM \(s).claim(p_keys, p_fingerprints, p_scopes, p_windows, p_retry, p_times, p_owner, p_lease_ms) c;
                COMMIT;
            END
            $$
            """
        case .settle:
            return """
            \(create) PROCEDURE \(s).settle_commit(p_acts smallint[], p_keys bytea[], p_attempts bigint[], p_fences bigint[],
                                                 p_receipts bytea[], p_times bigint[], p_reasons text[],
                                                 INOUT o_idx bigint[] DEFAULT NULL, INOUT o_ok boolean[] DEFAULT NULL,
                                                 INOUT o_status smallint[] DEFAULT NULL, INOUT o_attempt bigint[] DEFAULT NULL,
                                                 INOUT o_generation bigint[] DEFAULT NULL, INOUT o_fingerprint bytea[] DEFAULT NULL,
                                                 INOUT o_time bigint[] DEFAULT NULL, INOUT o_receipt bytea[] DEFAULT NULL)
            LANGUAGE plpgsql AS $$
            BEGIN
                SELECT coalesce(array_agg(c.idx\(order)), '{}'), coalesce(array_agg(c.ok\(order)), '{}'),
                       coalesce(array_agg(coalesce(c.status, -1)\(order)), '{}'),
                       coalesce(array_agg(coalesce(c.attempt, 0)\(order)), '{}'),
                       coalesce(array_agg(coalesce(c.generation, 0)\(order)), '{}'),
                       coalesce(array_agg(coalesce(c.fingerprint, '\\x')\(order)), '{}'),
                       coalesce(array_agg(coalesce(c.time_ms, 0)\(order)), '{}'),
                       coalesce(array_agg(coalesce(c.receipt, '\\x')\(order)), '{}')
                  INTO o_idx, o_ok, o_status, o_attempt, o_generation, o_fingerprint, o_time, o_receipt
                  FROM \(s).settle(p_acts, p_keys, p_attempts, p_fences, p_receipts, p_times, p_reasons) c;
                COMMIT;
            END
            $$
            """
        }
    }

    /// The settle function (§3.2, §3.4). Version 2 asked `waits` about each settled key
    /// (one statement per request); version 3 (`notifyAfterTheBatch`) collects the settled
    /// keys and asks once, after the batch's updates, which signals no later than before:
    /// either way a waiter listed after the question and before the commit is woken by its
    /// polling, not the signal.
    ///
    /// Version 4 (`readableOnly`) accepts no act on a row it cannot read (`unreadable`): the
    /// act is refused and the row returned as it is, which the store reads as `.corruptRecord`.
    static func settleFunction(_ s: String, channel: String, notifyAfterTheBatch: Bool, readableOnly: Bool = false) -> String {
        func notify(_ key: String) -> String { "PERFORM pg_notify('\(channel)', encode(\(key), 'hex'));" }
        let current = "x.key = r.k AND x.status = 1 AND x.attempt = r.at AND x.lease_id = r.f"
            + (readableOnly ? " AND NOT \(unreadable("x"))" : "")
        let perKey = notifyAfterTheBatch
            ? "                        v_settled := array_append(v_settled, r.k);"
            : """
                                    -- Only a key somebody waits for is signalled (`waits`, §3.4).
                                    IF EXISTS (SELECT 1 FROM \(s).waits w WHERE w.key = r.k) THEN
                                        \(notify("r.k"))
                                    END IF;
            """
        let afterLoop = notifyAfterTheBatch ? """
                -- Only a key somebody waits for is signalled (`waits`, §3.4): one question for the batch.
                IF cardinality(v_settled) > 0 THEN
                    FOR v_key IN SELECT DISTINCT w.key FROM \(s).waits w WHERE w.key = ANY (v_settled) LOOP
                        \(notify("v_key"))
                    END LOOP;
                END IF;
            """ : ""
        return """
            CREATE OR REPLACE FUNCTION \(s).settle(p_acts smallint[], p_keys bytea[], p_attempts bigint[], p_fences bigint[],
                                                   p_receipts bytea[], p_times bigint[], p_reasons text[])
            RETURNS TABLE(idx bigint, ok boolean, status smallint, attempt bigint, generation bigint,
                          fingerprint bytea, time_ms bigint, receipt bytea)
            LANGUAGE plpgsql AS $$
            #variable_conflict use_column
            DECLARE
                r record;
                e \(s).entries%ROWTYPE;
                v_settled bytea[] := '{}';
                v_key bytea;
            BEGIN
                FOR r IN SELECT u.a, u.k, u.at, u.f, u.rc, u.t, u.rs, u.i
                         FROM unnest(p_acts, p_keys, p_attempts, p_fences, p_receipts, p_times, p_reasons)
                              WITH ORDINALITY AS u(a, k, at, f, rc, t, rs, i)
                         ORDER BY u.k, u.i
                LOOP
                    idx := r.i;
                    IF r.a = 1 THEN
                        UPDATE \(s).entries x SET status = 2, receipt = r.rc, time_ms = r.t,
                               lease_id = NULL, lease_owner = NULL, lease_expires = NULL
                         WHERE \(current)
                        RETURNING x.* INTO e;
                    ELSIF r.a = 2 THEN
                        UPDATE \(s).entries x SET status = 0, fingerprint = decode(repeat('00', 32), 'hex'),
                               receipt = '\\x', time_ms = r.t, lease_id = NULL, lease_owner = NULL, lease_expires = NULL
                         WHERE \(current)
                        RETURNING x.* INTO e;
                    ELSE
                        UPDATE \(s).entries x SET lease_id = NULL, lease_owner = NULL, lease_expires = NULL
                         WHERE \(current)
                        RETURNING x.* INTO e;
                    END IF;
                    ok := FOUND;
                    IF ok THEN
                        IF r.a = 2 THEN
                            INSERT INTO \(s).audit (key, act, attempt, reason, time_ms) VALUES (r.k, 'release', r.at, r.rs, r.t);
                        END IF;
            \(perKey)
                    ELSE
                        SELECT * INTO e FROM \(s).entries x WHERE x.key = r.k;
                        IF NOT FOUND THEN
                            status := NULL; attempt := NULL; generation := NULL; fingerprint := NULL;
                            time_ms := NULL; receipt := NULL;
                            RETURN NEXT;
                            CONTINUE;
                        END IF;
                    END IF;
                    status := e.status; attempt := e.attempt; generation := e.generation; fingerprint := e.fingerprint;
                    time_ms := e.time_ms; receipt := e.receipt;
                    RETURN NEXT;
                END LOOP;
            \(afterLoop)
            END
            $$
            """
    }

    /// The statements that bring version 3 to version 4 (`Spec/POSTGRES.md` §2, §3, §5): the
    /// functions that decide on an entry's status, attempt or generation — `claim`, `settle`,
    /// `operate`, `compact` and `renew` — replaced by ones that act on no row holding values
    /// OnceLedger never writes (`unreadable`; the store reads it as `.corruptRecord`, and
    /// version 3's claim took any other status for pending-unknown and granted `.retry` over
    /// it), and that grant no attempt or generation past 2³² − 1 (`.limitExceeded`, as the file
    /// store: `FORMAT.md` §9.1). Same signatures, new answer codes (claim 5–7, operate 4–5).
    static func createVersion4(_ schema: String) -> [String] {
        let s = "\"\(schema)\""
        let channel = channel(schema)
        return [
            claimFunction(s, create: "CREATE OR REPLACE", readFloor: claimReadsFloor(schema), bounded: true),
            settleFunction(s, channel: channel, notifyAfterTheBatch: true, readableOnly: true),
            operateFunction(s, channel: channel, create: "CREATE OR REPLACE", bounded: true),
            compactFunction(s, create: "CREATE OR REPLACE", lockFloor: compactLocksFloor(schema), readableOnly: true),
            // Memo keys up to the file store's limits (§3.5): the primary key of `memo_values`
            // held namespace, run, step and name in one btree entry, at most about 2,700 bytes;
            // step and name (up to 1,024 bytes each) are now keyed by their SHA-256 (`key_digest`,
            // computed by the server), and kept whole and compared on every read.
            "ALTER TABLE \(s).memo_values ADD COLUMN key_digest bytea NOT NULL GENERATED ALWAYS AS (\(memoKeyDigest("step", "name"))) STORED",
            "ALTER TABLE \(s).memo_values DROP CONSTRAINT memo_values_pkey",
            "ALTER TABLE \(s).memo_values ADD PRIMARY KEY (namespace, run, generation, key_digest)",
            """
            CREATE OR REPLACE FUNCTION \(s).memo_put(p_namespace bytea, p_run bytea, p_generation bigint, p_step bytea, p_name bytea,
                                                     p_digest bytea, p_time bigint, p_value bytea) RETURNS boolean
            LANGUAGE plpgsql AS $$
            #variable_conflict use_column
            DECLARE
                current bigint;
                ended boolean;
            BEGIN
                SELECT m.latest INTO current FROM \(s).memo_runs m
                 WHERE m.namespace = p_namespace AND m.run = p_run FOR SHARE;
                IF current IS DISTINCT FROM p_generation THEN RETURN false; END IF;
                INSERT INTO \(s).memo_generations (namespace, run, generation) VALUES (p_namespace, p_run, p_generation)
                ON CONFLICT DO NOTHING;
                SELECT g.status IS NOT NULL INTO ended FROM \(s).memo_generations g
                 WHERE g.namespace = p_namespace AND g.run = p_run AND g.generation = p_generation FOR SHARE;
                IF ended THEN RETURN false; END IF;
                INSERT INTO \(s).memo_values AS v (namespace, run, generation, step, name, input_digest, time_ms, value)
                VALUES (p_namespace, p_run, p_generation, p_step, p_name, p_digest, p_time, p_value)
                ON CONFLICT (namespace, run, generation, key_digest)
                DO UPDATE SET input_digest = excluded.input_digest, time_ms = excluded.time_ms, value = excluded.value
                 WHERE v.step = excluded.step AND v.name = excluded.name;
                IF NOT FOUND THEN
                    -- Another step and name with the same SHA-256: never overwritten.
                    RAISE EXCEPTION 'memo key digest collision in run generation %', p_generation;
                END IF;
                RETURN true;
            END
            $$
            """,
            // The sweep keeps a run generation whose end OnceLedger never writes (a status but
            // 1, 2 or 3, a negative end time or generation): every read of it is `.corruptRecord`,
            // and the sweep deleted it with its values.
            """
            CREATE OR REPLACE FUNCTION \(s).memo_sweep(p_now bigint, p_succeeded bigint, p_failed bigint, p_cancelled bigint)
            RETURNS TABLE(namespace bytea, run bytea, generation bigint, entries bigint)
            LANGUAGE plpgsql AS $$
            #variable_conflict use_column
            BEGIN
                PERFORM pg_advisory_xact_lock(hashtext('\(schema).memo_sweep'));
                RETURN QUERY
                WITH due AS (
                    DELETE FROM \(s).memo_generations g
                     WHERE g.status IN (1, 2, 3) AND g.end_ms BETWEEN 0 AND p_now AND g.generation > 0
                       AND p_now::numeric - g.end_ms::numeric >=
                           (CASE g.status WHEN 1 THEN p_succeeded WHEN 2 THEN p_failed ELSE p_cancelled END)::numeric
                    RETURNING g.namespace, g.run, g.generation
                ), counted AS (
                    SELECT d.namespace, d.run, d.generation,
                           (SELECT count(*) FROM \(s).memo_values v
                             WHERE v.namespace = d.namespace AND v.run = d.run AND v.generation = d.generation) AS entries
                      FROM due d
                ), cleared AS (
                    DELETE FROM \(s).memo_runs m USING due d
                     WHERE m.namespace = d.namespace AND m.run = d.run AND m.latest = d.generation
                )
                SELECT c.namespace, c.run, c.generation, c.entries FROM counted c;
            END
            $$
            """,
            // renew: a lease of a row OnceLedger cannot read is not extended (it expires).
            """
            CREATE OR REPLACE FUNCTION \(s).renew(p_keys bytea[], p_fences bigint[], p_lease_ms bigint)
            RETURNS bigint LANGUAGE plpgsql AS $$
            #variable_conflict use_column
            DECLARE
                r record;
                renewed bigint := 0;
            BEGIN
                FOR r IN SELECT u.k, u.f FROM unnest(p_keys, p_fences) AS u(k, f) ORDER BY u.k LOOP
                    UPDATE \(s).entries x SET lease_expires = clock_timestamp() + p_lease_ms * interval '1 millisecond'
                     WHERE x.key = r.k AND x.lease_id = r.f AND x.status = 1 AND NOT \(unreadable("x"));
                    IF FOUND THEN renewed := renewed + 1; END IF;
                END LOOP;
                RETURN renewed;
            END
            $$
            """,
        ]
    }

    /// The statements that bring version 2 to version 3 (`Spec/POSTGRES.md` §3.5, §4, §5):
    /// `claim_commit` and `settle_commit` answering unsorted (`commitProcedure`), and a
    /// procedure that runs `memo_put` for each put of a batch (in key order, as the claim
    /// batch does, so two batches never lock rows in opposite orders), commits, and then
    /// answers each put's result: concurrent memo puts and journal steps of one process share
    /// a round trip and a commit, as claims and completions do. A put without an input digest
    /// is sent as an empty one (postgres-nio sends no `NULL` array element); a digest is
    /// 32 bytes otherwise.
    static func createVersion3(_ schema: String) -> [String] {
        let s = "\"\(schema)\""
        return [
            commitProcedure(.claim, s, create: "CREATE OR REPLACE", answersInOrder: false),
            commitProcedure(.settle, s, create: "CREATE OR REPLACE", answersInOrder: false),
            settleFunction(s, channel: channel(schema), notifyAfterTheBatch: true),
            """
            CREATE PROCEDURE \(s).memo_put_batch_commit(p_namespaces bytea[], p_runs bytea[], p_generations bigint[],
                                                        p_steps bytea[], p_names bytea[], p_digests bytea[],
                                                        p_times bigint[], p_values bytea[],
                                                        INOUT o_ok boolean[] DEFAULT NULL)
            LANGUAGE plpgsql AS $$
            DECLARE
                r record;
                v_ok boolean[] := array_fill(false, ARRAY[coalesce(cardinality(p_names), 0)]);
            BEGIN
                FOR r IN SELECT u.ns, u.run, u.g, u.st, u.nm, u.d, u.t, u.v, u.i
                         FROM unnest(p_namespaces, p_runs, p_generations, p_steps, p_names, p_digests, p_times, p_values)
                              WITH ORDINALITY AS u(ns, run, g, st, nm, d, t, v, i)
                         ORDER BY u.ns, u.run, u.g, u.st, u.nm, u.i
                LOOP
                    v_ok[r.i::integer] := \(s).memo_put(r.ns, r.run, r.g, r.st, r.nm, nullif(r.d, '\\x'::bytea), r.t, r.v);
                END LOOP;
                o_ok := v_ok;
                COMMIT;
            END
            $$
            """,
        ]
    }

    /// The statements that bring version 1 to version 2 (`Spec/POSTGRES.md` §3): procedures
    /// that run a writing function, `COMMIT`, and only then answer. A procedure's answer (its
    /// `INOUT` parameters) is sent after its body ran, so an answer that reached the client was
    /// committed — one round trip, where `BEGIN` / function / `COMMIT` takes three. The answers
    /// come back as one array per column (postgres-nio decodes no `NULL` array elements, so a
    /// missing value is a sentinel the store maps back: lease 0, status −1).
    static func createVersion2(_ schema: String) -> [String] {
        let s = "\"\(schema)\""
        return [
            // Callers waiting for a key in `waitForChange` (§3.4): settle signals only the keys
            // listed here, so a completion nobody waits for wakes no listener.
            """
            CREATE TABLE \(s).waits (
                key bytea NOT NULL,
                waiter bigint NOT NULL,
                since timestamptz NOT NULL DEFAULT clock_timestamp(),
                PRIMARY KEY (key, waiter)
            )
            """,
            // The floor held by an advisory lock instead of a row lock on `meta`.
            claimFunction(s, create: "CREATE OR REPLACE", readFloor: claimReadsFloor(schema)),
            // Compaction also clears waits a process left when it died waiting (they only cost
            // a signal per settle of their key).
            compactFunction(s, create: "CREATE OR REPLACE", lockFloor: compactLocksFloor(schema)),
            // settle without a row lock before the update: the update's own condition (the
            // claim's attempt and fence, the entry pending) decides, re-checked by the server
            // on the newest row version if another transaction changed it meanwhile; only a
            // refused request reads the row, to return it.
            settleFunction(s, channel: channel(schema), notifyAfterTheBatch: false),
            commitProcedure(.claim, s, create: "CREATE", answersInOrder: true),
            commitProcedure(.settle, s, create: "CREATE", answersInOrder: true),
            """
            CREATE PROCEDURE \(s).memo_put_commit(p_namespace bytea, p_run bytea, p_generation bigint, p_step bytea,
                                                   p_name bytea, p_digest bytea, p_time bigint, p_value bytea,
                                                   INOUT o_ok boolean DEFAULT NULL)
            LANGUAGE plpgsql AS $$
            BEGIN
                o_ok := \(s).memo_put(p_namespace, p_run, p_generation, p_step, p_name, p_digest, p_time, p_value);
                COMMIT;
            END
            $$
            """,
        ]
    }
}
