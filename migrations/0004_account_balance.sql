-- 0004: each account's balance kept beside the ledger (the ledger stays the
-- truth: balance_nusd = sum(ledger.amount_nusd), maintained in the same
-- transactions that write the ledger), so routers can check credits without
-- summing the ledger.
ALTER TABLE accounts ADD COLUMN balance_nusd bigint NOT NULL DEFAULT 0;
UPDATE accounts a SET balance_nusd = coalesce((SELECT sum(amount_nusd) FROM ledger l WHERE l.account_id = a.id), 0);
