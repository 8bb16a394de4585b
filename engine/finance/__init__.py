"""Finance: cost layers per company, account mapping, vouchers, the review sandbox, terms
and exports (DESIGN.md §1 company/voucher, §14). Pure like the domain: no infrastructure;
the journal follower feeds it through engine.finance.follower, stores are ports."""
