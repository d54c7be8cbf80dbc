// Drives Microsoft's unmodified Azure IoT Node.js *service* SDK (azure-iothub) against a hub on
// https://localhost:443 (the SDK's REST client dials 443 and has no port or proxy option, so the test runs
// the hub and this script in a private network namespace: netns_node_service.py). The hub's development CA is
// trusted through NODE_EXTRA_CA_CERTS. Usage: node node_service.js CONNECTION_STRING DEVICE_A DEVICE_B; prints
// one JSON object with what each call returned (or the error it raised), for the test to check.
'use strict';

const { Registry, JobClient } = require('azure-iothub');

const [cs, deviceA, deviceB] = process.argv.slice(2);
const out = {};

function described(err) {
  return { error: err.constructor ? err.constructor.name : 'Error', message: String(err.message || err) };
}

async function step(name, fn) {
  try {
    out[name] = await fn();
  } catch (err) {
    out[name] = described(err);
  }
}

// The promise forms resolve to {responseBody, httpResponse} (Registry), {jobStatus, response} (JobClient) or
// {result, message} (Twin.update), depending on the call.
const body = (r) => (r && r.responseBody !== undefined ? r.responseBody : r && r.jobStatus !== undefined ? r.jobStatus : r);

async function pageAll(query) {
  const rows = [];
  for (let n = 0; n < 20; n++) {
    const page = await new Promise((resolve, reject) =>
      query.next((err, results) => (err ? reject(err) : resolve(results))),
    );
    rows.push(...page);
    if (!query.hasMoreResults) break;
  }
  return rows;
}

async function main() {
  const registry = Registry.fromConnectionString(cs);
  const jobs = JobClient.fromConnectionString(cs);

  await step('list', async () => body(await registry.list()).map((d) => d.deviceId).sort());
  await step('getTwin', async () => {
    const twin = body(await registry.getTwin(deviceA));
    return { deviceId: twin.deviceId, etag: twin.etag, desired: twin.properties.desired.$version };
  });
  await step('updateTwin', async () => {
    const twin = body(await registry.getTwin(deviceA));
    const patch = { tags: { city: 'Redmond' }, properties: { desired: { interval: 1000 } } };
    const updated = await twin.update(patch); // with the etag the GET gave it (Node requires one)
    const again = body(await registry.getTwin(deviceA)); // what the hub stored
    return { updated: Boolean(updated), tags: again.tags, interval: again.properties.desired.interval };
  });
  await step('staleEtag', async () => {
    await registry.updateTwin(deviceA, { tags: { x: 1 } }, 'AAAAAAAAAAE=');
    return 'no error';
  });
  await step('query', async () => {
    const query = registry.createQuery("SELECT * FROM devices WHERE tags.city = 'Redmond'", 1);
    return (await pageAll(query)).map((t) => t.deviceId);
  });
  await step('queryPaged', async () => {
    const query = registry.createQuery('SELECT deviceId FROM devices', 1); // one row a page
    return (await pageAll(query)).map((t) => t.deviceId);
  });
  await step('job', async () => {
    const jobId = `node-${Date.now()}`;
    const created = body(
      await jobs.scheduleDeviceMethod(jobId, `deviceId IN ['${deviceA}', '${deviceB}']`, {
        methodName: 'reboot',
        payload: { a: 1 },
        responseTimeoutInSeconds: 30,
      }),
    );
    const got = body(await jobs.getJob(jobId));
    const cancelled = body(await jobs.cancelJob(jobId));
    return { created: created.status, type: got.type, got: got.jobId, cancelled: cancelled.status };
  });
  await step('jobQuery', async () => {
    const query = jobs.createQuery('scheduleDeviceMethod', undefined, 100);
    const rows = await pageAll(query);
    return rows.map((j) => j.type);
  });
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((err) => {
  process.stdout.write(JSON.stringify({ fatal: described(err) }) + '\n');
  process.exitCode = 1;
});
