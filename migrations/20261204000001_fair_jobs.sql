-- Jobs are taken round-robin between tenants. apalis fetches a queue's due jobs by priority, then
-- by run_at; a job is given the priority minus the number of its tenant's jobs already waiting in
-- that queue and due no later, so every tenant's first waiting job comes before any tenant's
-- second. A tenant that queues 300 validations waits its own turn behind them; another tenant's
-- one job runs next. Counting stops at 1000: past that the order within such a tenant is by time.
--
-- The tenant is also kept as a column, taken from the job's payload, so a tenant's queued jobs
-- can be found (and deleted with it) without decoding every payload.
ALTER TABLE apalis.jobs ADD COLUMN tenant text;

UPDATE apalis.jobs SET tenant = convert_from(job, 'UTF8')::jsonb ->> 'tenant'
WHERE status IN ('Pending', 'Queued', 'Running', 'Failed');

CREATE INDEX jobs_waiting_by_tenant ON apalis.jobs (job_type, tenant, run_at) WHERE status IN ('Pending', 'Queued');

CREATE FUNCTION apalis.fair_job_priority() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.tenant := convert_from(NEW.job, 'UTF8')::jsonb ->> 'tenant';
    NEW.priority := coalesce(NEW.priority, 0) - (
        SELECT count(*) FROM (
            SELECT 1 FROM apalis.jobs
            WHERE job_type = NEW.job_type AND tenant = NEW.tenant
              AND status IN ('Pending', 'Queued') AND run_at <= NEW.run_at
            LIMIT 1000
        ) AS ahead
    );
    RETURN NEW;
END;
$$;

CREATE TRIGGER fair_job_priority BEFORE INSERT ON apalis.jobs
FOR EACH ROW EXECUTE FUNCTION apalis.fair_job_priority();
