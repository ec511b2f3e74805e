#!/usr/bin/perl
# Independent CDX reader (DBD::XBase 1.08: XBase::Index / XBase::cdx): walk a tag in key order.
# Adapted from the reference's experiments/cdxdump.pl: optional 4th arg = key type ('C') so
# expression tags (CUSTNO+INVNO, UPPER(COMPANY)) can be walked too.
use strict; use warnings; use XBase; use XBase::Index;
my ($dbfname, $cdx, $tag, $type) = @ARGV;
my $dbf = XBase->new(name => $dbfname, ignorememo => 1) or die XBase->errstr;
my %o = (tag => $tag, dbf => $dbf); $o{type} = $type if defined $type;
my $idx = XBase::Index->new($cdx, %o) or die XBase::Index->errstr;
$idx->prepare_select;
my @out;
while (my ($key, $rec) = $idx->fetch) { push @out, "'$key'=>$rec"; }
print "perl XBase::cdx $tag: ", join(', ', @out), "  (n=", scalar(@out), ", dbf last_record=", $dbf->last_record + 1, ")\n";
