-- Price events and the public list price book.
--
-- `version`: a monotonic number per price version (creation order), carried by
-- `billing.price.changed` so a projection can ignore what it already holds.
-- `price_announcements`: which versions were put in the outbox. Creating a price announces
-- it in the same transaction; at start-up billing announces every version without a row
-- here (the seed below), and the primary key makes that once-only across replicas.
ALTER TABLE prices ADD COLUMN version bigint GENERATED ALWAYS AS IDENTITY;
CREATE UNIQUE INDEX prices_by_version ON prices (version);

-- Which price versions were announced on billing.price.v1 (once each, across replicas).
CREATE TABLE price_announcements (
    price_id     uuid PRIMARY KEY REFERENCES prices (id),
    announced_at timestamptz NOT NULL DEFAULT now()
);

-- The public list price book (USD per hour, micro-units), so a fresh platform rates usage
-- without an operator entering prices. One whole GPU per SKU; a MIG instance is priced pro
-- rata by the larger of its shares of the GPU's 7 compute slices and 8 memory slices (an
-- instance holding 2/8 of the memory blocks that memory from every other profile), rounded
-- up to the micro-unit. The rows are the GPU catalog's list price book (libs/contracts,
-- gpucloud_contracts/gpus.py); `tools/contracts/generate.py --check` fails when they differ.
-- In effect from 2020-01-01 so any usage is covered; later versions supersede it.
INSERT INTO prices (id, price_key, currency, tenant_id, micros_per_gpu_hour, min_increment_s,
                    effective_from)
SELECT id::uuid, price_key, 'USD', NULL, micros, 1, timestamptz '2020-01-01 00:00:00+00'
FROM (VALUES
    ('f9c5cd61-7357-5e32-be25-08d0d16bfddf', 'gpu:a100-40gb', 1800000),  -- whole GPU
    ('c5fc10f8-340e-5c8c-85a5-7f1b9ac10209', 'mig:a100-40gb:1g.5gb', 257143),  -- 1/7 compute, 1/8 memory -> 1/7
    ('2b7b78e1-abef-52f8-9c6a-e99cc6468dec', 'mig:a100-40gb:1g.5gb+me', 257143),  -- 1/7 compute, 1/8 memory -> 1/7
    ('0f832d00-4e3f-59cb-aa4d-dfaf54de1a80', 'mig:a100-40gb:1g.10gb', 450000),  -- 1/7 compute, 2/8 memory -> 1/4
    ('de2db82a-2d5b-5cde-abef-80684c09f6ea', 'mig:a100-40gb:2g.10gb', 514286),  -- 2/7 compute, 2/8 memory -> 2/7
    ('723bf202-6271-5555-aad3-d16878679a0b', 'mig:a100-40gb:3g.20gb', 900000),  -- 3/7 compute, 4/8 memory -> 1/2
    ('8faa036e-8de8-5b17-a1a4-462e77f94adb', 'mig:a100-40gb:4g.20gb', 1028572),  -- 4/7 compute, 4/8 memory -> 4/7
    ('425de21e-54f6-5f92-95ca-98f306e1fc11', 'mig:a100-40gb:7g.40gb', 1800000),  -- 7/7 compute, 8/8 memory -> 1
    ('36175126-1c9a-50a5-86eb-12b9987a86a1', 'gpu:a100-80gb', 2200000),  -- whole GPU
    ('1ff96648-3e8b-592f-8d9c-03cc6232f5fc', 'mig:a100-80gb:1g.10gb', 314286),  -- 1/7 compute, 1/8 memory -> 1/7
    ('416db875-d7ab-5887-985b-595c9acc9bf6', 'mig:a100-80gb:1g.10gb+me', 314286),  -- 1/7 compute, 1/8 memory -> 1/7
    ('c73d3abe-6307-5398-a84d-2081c470c435', 'mig:a100-80gb:1g.20gb', 550000),  -- 1/7 compute, 2/8 memory -> 1/4
    ('7fe20a85-f236-5bd1-8a9b-9ce2f19f5ad8', 'mig:a100-80gb:2g.20gb', 628572),  -- 2/7 compute, 2/8 memory -> 2/7
    ('6d14acf2-b50e-5987-9365-e84b078f7dd5', 'mig:a100-80gb:3g.40gb', 1100000),  -- 3/7 compute, 4/8 memory -> 1/2
    ('5961f893-01d2-5454-bc17-1f2aa692a5ee', 'mig:a100-80gb:4g.40gb', 1257143),  -- 4/7 compute, 4/8 memory -> 4/7
    ('3079565b-8fad-5a8e-8499-a66b62b6fcd0', 'mig:a100-80gb:7g.80gb', 2200000),  -- 7/7 compute, 8/8 memory -> 1
    ('1cbc52e0-b1fb-50a7-995a-8f48fa77849a', 'gpu:h100-80gb', 3600000),  -- whole GPU
    ('e6a516d2-b92f-559c-8c23-dc5ae727cf99', 'mig:h100-80gb:1g.10gb', 514286),  -- 1/7 compute, 1/8 memory -> 1/7
    ('6e5f9fde-d2f8-5830-83ef-fc3b4e7f82cc', 'mig:h100-80gb:1g.10gb+me', 514286),  -- 1/7 compute, 1/8 memory -> 1/7
    ('764b2670-28e4-5c90-a13f-9e1ad7ccdadb', 'mig:h100-80gb:1g.20gb', 900000),  -- 1/7 compute, 2/8 memory -> 1/4
    ('cade2068-176a-5db7-8e9f-c7c4c8a425de', 'mig:h100-80gb:2g.20gb', 1028572),  -- 2/7 compute, 2/8 memory -> 2/7
    ('e50888a2-6b22-5598-86f3-7fda6b8c27e0', 'mig:h100-80gb:3g.40gb', 1800000),  -- 3/7 compute, 4/8 memory -> 1/2
    ('a8e4e37d-0966-5e41-a8d7-f32eb429dfb6', 'mig:h100-80gb:4g.40gb', 2057143),  -- 4/7 compute, 4/8 memory -> 4/7
    ('817b62a1-c502-53e9-b128-4952f679edbd', 'mig:h100-80gb:7g.80gb', 3600000),  -- 7/7 compute, 8/8 memory -> 1
    ('3abf64ba-ec14-5036-9e9c-c50735e64f86', 'gpu:h200-141gb', 4500000),  -- whole GPU
    ('0324741c-7b11-5a5f-b139-9ce4943481b3', 'mig:h200-141gb:1g.18gb', 642858),  -- 1/7 compute, 1/8 memory -> 1/7
    ('d3385d55-8e67-5d3b-afd8-f1be50d4f97b', 'mig:h200-141gb:1g.18gb+me', 642858),  -- 1/7 compute, 1/8 memory -> 1/7
    ('423cabe6-a9c1-57b7-ab8a-6762c6c20b2c', 'mig:h200-141gb:1g.35gb', 1125000),  -- 1/7 compute, 2/8 memory -> 1/4
    ('369f97a5-dc04-56eb-931e-c2174a2d31e2', 'mig:h200-141gb:2g.35gb', 1285715),  -- 2/7 compute, 2/8 memory -> 2/7
    ('e8dcb776-98b9-508a-8a1b-470ad074df24', 'mig:h200-141gb:3g.71gb', 2250000),  -- 3/7 compute, 4/8 memory -> 1/2
    ('91a43637-474d-573c-bf90-1cbd0c35ec1d', 'mig:h200-141gb:4g.71gb', 2571429),  -- 4/7 compute, 4/8 memory -> 4/7
    ('359aa3de-7524-54ef-860e-be1f236de442', 'mig:h200-141gb:7g.141gb', 4500000)  -- 7/7 compute, 8/8 memory -> 1
) AS list (id, price_key, micros)
ORDER BY price_key;
